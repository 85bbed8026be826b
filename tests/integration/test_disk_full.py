"""The data folder on a small, full filesystem (a 1 MiB tmpfs mounted over it): uploads that do not fit
are 507 with the error envelope and Retry-After (they were 500 as plain text), readiness says so, and
nothing accepted is lost; once there is room again, the refused chunks go in.

The tmpfs is mounted in a mount namespace of the gateway's own, inside a user namespace (``unshare
--user --map-root-user --mount``): no root needed where the kernel lets users make namespaces, and
nothing mounted on the host. The test sees that file system through ``/proc/<gateway>/root``."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from audioflow.workers.simulate import cut_chunks, load_speech
from tests.integration.stack import Stack

# Runs the rest of its command line with a tmpfs of size $1 over the folder $2, in namespaces of its own.
_ON_SMALL_FILESYSTEM = [
    "unshare", "--user", "--map-root-user", "--mount", "--propagation", "private", "--",
    "sh", "-c", 'mount -t tmpfs -o "size=$1" tmpfs "$2" && shift 2 && exec "$@"', "sh",
]  # fmt: skip


def namespaces_usable() -> str | None:
    """Why a tmpfs cannot be mounted in a user namespace here, or None if it can."""
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    tried = subprocess.run([*_ON_SMALL_FILESYSTEM, "1m", "/tmp", "true"], capture_output=True, text=True)
    return None if tried.returncode == 0 else tried.stderr.strip() or f"exit {tried.returncode}"


def test_full_disk_is_507_with_retry_after_and_loses_nothing(make: Callable[..., Stack]) -> None:
    if (why := namespaces_usable()) is not None:
        pytest.skip(f"cannot mount a tmpfs in a user namespace here: {why}")
    stack = make(AUDIOFLOW_MIN_FREE_BYTES=str(200 * 1024))
    folder = Path(stack.env["AUDIOFLOW_DATA_DIR"])
    fmt, pcm = load_speech()
    chunks = cut_chunks(fmt, pcm, 4.0)  # 128 KB each: about 4 fit beside the filler
    gateway = stack.start_api(wrapper=[*_ON_SMALL_FILESYSTEM, "1m", str(folder)])
    data = Path(f"/proc/{gateway.pid}/root") / folder.relative_to("/")  # the gateway's view of it

    filler = data / "filler"  # something else on the volume, that an operator can remove later
    filler.write_bytes(bytes(512 * 1024))
    assert stack.client.get("/readyz").json()["checks"]["storage"] == "ok"
    accepted: list[int] = []
    refused = None
    for seq, body in enumerate(chunks):
        reply = stack.put_chunk("full", seq, body)
        if reply.status_code == 201:
            accepted.append(seq)
            continue
        refused = reply
        break
    assert refused is not None, "1 MiB never filled up"
    assert refused.status_code == 507, refused.text
    assert refused.json()["error"]["code"] == "storage_full"
    assert refused.headers["retry-after"]
    ready = stack.client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["checks"]["storage"].startswith("full")

    meeting = stack.meeting("full")
    assert meeting["chunks_received"] == len(accepted)
    stored = data / "meetings" / "full" / "chunks"
    # The accepted chunks' files, whole, and no part of the refused one's.
    assert sorted(p.name for p in stored.iterdir()) == [f"{seq:08d}.wav" for seq in accepted]
    for seq in accepted:
        assert (stored / f"{seq:08d}.wav").read_bytes() == chunks[seq]
    assert not (folder / "meetings").exists(), "the gateway wrote to the host's folder, not its tmpfs"

    # Room again (an operator frees space): the refused chunk is accepted on retry.
    filler.unlink()
    retried = stack.put_chunk("full", len(accepted), chunks[len(accepted)])
    assert retried.status_code == 201, retried.text
    assert stack.client.get("/readyz").status_code == 200
