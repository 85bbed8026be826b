"""The data folder on a small, full filesystem (a 1 MiB tmpfs mounted over it): uploads that do not fit
are 507 with the error envelope and Retry-After (they were 500 as plain text), readiness says so, and
nothing accepted is lost; once there is room again, the refused chunks go in."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from audioflow.workers.simulate import cut_chunks, load_speech
from tests.integration.stack import Stack


@contextlib.contextmanager
def small_filesystem(folder: Path, size: str) -> Iterator[None]:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_full_disk_is_507_with_retry_after_and_loses_nothing(make: Callable[..., Stack]) -> None:
    stack = make(AUDIOFLOW_MIN_FREE_BYTES=str(200 * 1024))
    data = Path(stack.env["AUDIOFLOW_DATA_DIR"])
    fmt, pcm = load_speech()
    chunks = cut_chunks(fmt, pcm, 4.0)  # 128 KB each: about 4 fit beside the filler
    with small_filesystem(data, "1m"):
        filler = data / "filler"  # something else on the volume, that an operator can remove later
        filler.write_bytes(bytes(512 * 1024))
        stack.start_api()
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
        assert not list(data.rglob(".tmp-*")), "a partial chunk file was left behind"

        meeting = stack.meeting("full")
        assert meeting["chunks_received"] == len(accepted)
        for seq in accepted:
            stored = data / "meetings" / "full" / "chunks" / f"{seq:08d}.wav"
            assert stored.read_bytes() == chunks[seq]

        # Room again (an operator frees space): the refused chunk is accepted on retry.
        filler.unlink()
        retried = stack.put_chunk("full", len(accepted), chunks[len(accepted)])
        assert retried.status_code == 201, retried.text
        assert stack.client.get("/readyz").status_code == 200
