"""Where chunk files and recordings live, addressed only by (meeting_id, seq), never by a client path.

``LocalStorage`` keeps them under ``AUDIOFLOW_DATA_DIR`` (one shared volume in a cluster). The
:class:`ChunkStore` protocol is the seam for an object store later.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Protocol

from audioflow.core.errors import StorageFull
from audioflow.core.ids import check_meeting_id, check_seq


class ChunkStore(Protocol):
    def put_chunk(self, meeting_id: str, seq: int, data: bytes | memoryview) -> None: ...
    def get_chunk(self, meeting_id: str, seq: int) -> bytes: ...
    def has_chunk(self, meeting_id: str, seq: int) -> bool: ...
    def recording_path(self, meeting_id: str) -> Path: ...
    def delete_meeting(self, meeting_id: str) -> None: ...
    def free_bytes(self) -> int: ...


_NO_ROOM = (errno.ENOSPC, errno.EDQUOT)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStorage:
    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = root.resolve()
        self.fsync = fsync

    def meeting_dir(self, meeting_id: str) -> Path:
        return self.root / "meetings" / check_meeting_id(meeting_id)

    def chunk_path(self, meeting_id: str, seq: int) -> Path:
        return self.meeting_dir(meeting_id) / "chunks" / f"{check_seq(seq):08d}.wav"

    def recording_path(self, meeting_id: str) -> Path:
        return self.meeting_dir(meeting_id) / "recording.wav"

    def put_chunk(self, meeting_id: str, seq: int, data: bytes | memoryview) -> None:
        """Write atomically (temp file + rename) so a reader never sees half a chunk; with fsync on, the
        folder is synced too, so the rename itself survives a power loss. A full disk is
        :class:`StorageFull` (nothing is left behind)."""
        path = self.chunk_path(meeting_id, seq)
        tmp: str | None = None
        try:
            self._make_folders(path.parent)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                if self.fsync:
                    handle.flush()
                    os.fsync(handle.fileno())
            os.replace(tmp, path)
            if self.fsync:
                _fsync_dir(path.parent)
        except BaseException as exc:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
            if isinstance(exc, OSError) and exc.errno in _NO_ROOM:
                raise StorageFull("the data folder is full: the chunk was not stored; retry later") from exc
            raise

    def _make_folders(self, folder: Path) -> None:
        """Create ``folder`` and its missing parents; with fsync on, each new folder's parent is synced,
        so a power loss cannot unlink the first chunk of a meeting by losing its folders."""
        if folder.is_dir():  # every chunk but a meeting's first: one stat, not one per parent
            return
        missing = [p for p in (folder, *folder.parents) if not p.exists()]
        folder.mkdir(parents=True, exist_ok=True)
        if self.fsync:
            for created in missing:
                _fsync_dir(created.parent)

    def free_bytes(self) -> int:
        """Room left where chunks and recordings are written."""
        self.root.mkdir(parents=True, exist_ok=True)
        return shutil.disk_usage(self.root).free

    def get_chunk(self, meeting_id: str, seq: int) -> bytes:
        return self.chunk_path(meeting_id, seq).read_bytes()

    def has_chunk(self, meeting_id: str, seq: int) -> bool:
        return self.chunk_path(meeting_id, seq).is_file()

    def detach_meeting(self, meeting_id: str) -> Path | None:
        """Move the meeting's folder out of the way in one step (a rename into ``<root>/deleting/``), so
        that nothing is read from or written into it by path any more; None if it has no folder. A worker
        that still holds one of its files open writes into the moved file, never into a new one: the
        concat worker opens recordings without creating the folder (see ``recording_lock``)."""
        folder = self.meeting_dir(meeting_id)
        trash = self.root / "deleting" / f"{folder.name}.{secrets.token_hex(6)}"
        trash.parent.mkdir(parents=True, exist_ok=True)
        try:
            folder.rename(trash)
        except FileNotFoundError:
            return None
        return trash

    def reattach_meeting(self, meeting_id: str, detached: Path) -> None:
        """Undo :meth:`detach_meeting` (the deletion it was part of failed)."""
        detached.rename(self.meeting_dir(meeting_id))

    def purge(self, detached: Path) -> None:
        """Remove a detached folder for good."""
        shutil.rmtree(detached, ignore_errors=True)

    def delete_meeting(self, meeting_id: str) -> None:
        detached = self.detach_meeting(meeting_id)
        if detached is not None:
            self.purge(detached)
