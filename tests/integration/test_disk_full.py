"""The data folder on a small, full filesystem (a 1 MiB tmpfs mounted over it): uploads that do not fit
are 507 with the error envelope and Retry-After (they were 500 as plain text), readiness says so, and
nothing accepted is lost; once there is room again, the refused chunks go in.

The tmpfs is mounted in a mount namespace of the gateway's own, so nothing is mounted on the host: inside
a user namespace (``unshare --user --map-root-user --mount``) where the kernel lets users make them, so
that no root is needed; else, as root, in a mount namespace alone. The test sees that file system through
``/proc/<gateway>/root``."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from audioflow.workers.simulate import cut_chunks, load_speech
from tests.integration.stack import Stack

# Runs the rest of its command line with a tmpfs of size $1 over the folder $2.
_MOUNT_THEN_RUN = ["sh", "-c", 'mount -t tmpfs -o "size=$1" tmpfs "$2" && shift 2 && exec "$@"', "sh"]
# The namespaces to do it in, in order of preference: a user's own, then root's where users may not.
_NAMESPACES = (
    ["unshare", "--user", "--map-root-user", "--mount", "--propagation", "private", "--"],
    ["unshare", "--mount", "--propagation", "private", "--"],
)


def on_small_filesystem() -> tuple[list[str], list[str]]:
    """The first command prefix that mounts a tmpfs in namespaces of its own here (empty if none does),
    and why each one tried before it could not."""
    if shutil.which("unshare") is None:
        return [], ["unshare (util-linux) is not installed"]
    why: list[str] = []
    for namespaces in _NAMESPACES:
        wrapper = [*namespaces, *_MOUNT_THEN_RUN]
        tried = subprocess.run([*wrapper, "1m", "/tmp", "true"], capture_output=True, text=True)
        if tried.returncode == 0:
            return wrapper, why
        why.append(f"{' '.join(namespaces[:-1])}: {tried.stderr.strip() or f'exit {tried.returncode}'}")
    return [], why


def test_full_disk_is_507_with_retry_after_and_loses_nothing(make: Callable[..., Stack]) -> None:
    wrapper, why = on_small_filesystem()
    if not wrapper:  # neither a user namespace nor root: nothing here can mount a file system
        pytest.skip(f"cannot mount a tmpfs in a namespace here: {'; '.join(why)}")
    stack = make(AUDIOFLOW_MIN_FREE_BYTES=str(200 * 1024))
    folder = Path(stack.env["AUDIOFLOW_DATA_DIR"])
    fmt, pcm = load_speech()
    chunks = cut_chunks(fmt, pcm, 4.0)  # 128 KB each: about 4 fit beside the filler
    gateway = stack.start_api(wrapper=[*wrapper, "1m", str(folder)])
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
