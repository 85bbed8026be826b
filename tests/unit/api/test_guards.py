"""The body spool of the guard: bodies past 1 MiB go to an unnamed file in the data folder and are read
back mapped, byte for byte; a full disk while receiving is StorageFull (507 with Retry-After)."""

from __future__ import annotations

import errno
import io
import tempfile
from pathlib import Path

import pytest

from audioflow.api.guards import SPOOL_IN_MEMORY, Spool
from audioflow.core.errors import StorageFull


@pytest.mark.parametrize("size", [0, 1000, SPOOL_IN_MEMORY, SPOOL_IN_MEMORY + 1, 3 * SPOOL_IN_MEMORY + 7])
def test_a_body_reads_back_byte_for_byte_in_memory_or_spooled(tmp_path: Path, size: int) -> None:
    body = bytes(i * 7 % 251 for i in range(size))
    spool = Spool(tmp_path / "incoming")
    for start in range(0, size, 65536):
        spool.write(body[start : start + 65536])
    assert spool.size == size
    assert bytes(spool.view()) == body
    # Only a body past the in-memory share touches the disk, and then as an unnamed file.
    assert (tmp_path / "incoming").exists() == (size > SPOOL_IN_MEMORY)
    if size > SPOOL_IN_MEMORY:
        assert not list((tmp_path / "incoming").iterdir())
    spool.close()


class _FullDisk(io.BytesIO):
    def write(self, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_while_spooling_is_storage_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "TemporaryFile", lambda **_: _FullDisk())
    spool = Spool(tmp_path)
    spool.write(bytes(SPOOL_IN_MEMORY))
    with pytest.raises(StorageFull) as refused:
        spool.write(b"one byte too many")
    assert refused.value.retry and refused.value.http_status == 507
    spool.close()
