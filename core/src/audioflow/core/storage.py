"""Where chunk files and recordings live, addressed only by (meeting_id, seq), never by a client path.

The protocols are the seam the gateway and the workers depend on: :class:`ChunkStore` for chunks,
:class:`RecordingStore` for the growing recording (a writer's turn and appends, readers that follow it,
deletion). ``LocalStorage`` is the one implementation: files under ``AUDIOFLOW_DATA_DIR`` (one shared
volume in a cluster), the recording kept by ``audioflow.core.recording``. An object store adds another
implementation without touching the pipeline.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from audioflow.core import fileio
from audioflow.core.errors import StorageFull
from audioflow.core.ids import check_meeting_id, check_seq
from audioflow.core.recording import RecordingFile, RecordingFileReader, recording_lock
from audioflow.core.wav import AudioFormat

ChunkData = tuple[str, int, bytes | memoryview]  # (meeting_id, seq, the chunk file's bytes)


class ChunkStore(Protocol):
    def put_chunk(self, meeting_id: str, seq: int, data: bytes | memoryview) -> None: ...
    def put_chunks(self, chunks: Sequence[ChunkData]) -> None:
        """Store several chunks as :meth:`put_chunk` stores each, with their syncs done together."""
        ...

    def get_chunk(self, meeting_id: str, seq: int) -> bytes: ...
    def has_chunk(self, meeting_id: str, seq: int) -> bool: ...
    def delete_meeting(self, meeting_id: str) -> None: ...
    def free_bytes(self) -> int: ...


class RecordingReader(Protocol):
    """A meeting's recording (a canonical WAV that only grows) opened for reading. It stays on the
    recording it opened, so a meeting deleted or its id reused meanwhile never switches bytes under it."""

    @property
    def format(self) -> AudioFormat: ...

    def committed(self) -> int:
        """Bytes of the WAV, header included, that may be served now (whole frames, committed audio
        only); RecordingCorrupt if it can no longer be read as a recording. Follow growth by asking
        again."""
        ...

    def read(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes of the WAV from ``offset``; fewer only at its end. OSError once closed."""
        ...

    def current(self) -> bool:
        """Whether this is still the meeting's recording (False once the meeting is deleted)."""
        ...

    def close(self) -> None: ...


class Extent(Protocol):
    """Where one held seq's PCM sits within the recording's data."""

    @property
    def length(self) -> int: ...


class RecordingWriter(Protocol):
    """A recording open for appends, in seq order, by the holder of its turn (see ``RecordingFile``)."""

    @property
    def format(self) -> AudioFormat: ...
    @property
    def next_seq(self) -> int: ...
    @property
    def held_through(self) -> int: ...
    @property
    def data_length(self) -> int: ...
    @property
    def file_length(self) -> int: ...
    @property
    def duration_s(self) -> float: ...
    def entry(self, seq: int) -> Extent | None: ...
    def append(self, seq: int, pcm: bytes | bytearray | memoryview) -> object: ...
    def append_silence(self, seq: int, frames: int) -> object: ...


@dataclass(frozen=True)
class Detached:
    """A meeting's files moved out of the way by :meth:`RecordingStore.detach_meeting`; ``key`` is the
    backend's name for where they went."""

    meeting_id: str
    key: str


class RecordingStore(Protocol):
    def recording_turn(self, meeting_id: str) -> AbstractContextManager[None]:
        """Hold the meeting's recording exclusively (processes take turns; a holder that dies lets go).
        Never creates the meeting's storage: FileNotFoundError if it is gone (the meeting was deleted)."""
        ...

    def open_for_append(self, meeting_id: str, fmt: AudioFormat) -> AbstractContextManager[RecordingWriter]:
        """Open the recording for appends, created empty if missing and recovered after a crash; only
        within :meth:`recording_turn`. FileNotFoundError if the meeting's storage is gone."""
        ...

    def open_recording(self, meeting_id: str) -> RecordingReader:
        """The recording for reading; FileNotFoundError if it does not exist yet."""
        ...

    def detach_meeting(self, meeting_id: str) -> Detached | None:
        """Take the meeting's chunks and recording out of reach in one step; None if it has none."""
        ...

    def reattach_meeting(self, meeting_id: str, detached: Detached) -> None: ...
    def purge(self, detached: Detached) -> None: ...


class Storage(ChunkStore, RecordingStore, Protocol):
    """Chunks and recordings: what the gateway and the concat worker hold."""


_NO_ROOM = (errno.ENOSPC, errno.EDQUOT)
_CREATE_OR_EMPTY = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
T = TypeVar("T")


_fsync_dir = fileio.fsync_dir  # one folder sync for chunks and recordings (tests wrap it here)
_SYNCS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="fsync")


def _each(sync: Callable[[T], object], items: list[T]) -> None:
    """``sync`` every item, in parallel when there are several (fsync releases the GIL); the first
    error is raised after all have finished."""
    if len(items) == 1:
        sync(items[0])
        return
    for done in [_SYNCS.submit(sync, item) for item in items]:
        done.result()


@dataclass
class _Written:
    """A chunk's file, open while its bytes are written (and synced)."""

    fd: int  # -1 once closed
    path: str

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)


class LocalStorage:
    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = root.resolve()
        self.fsync = fsync
        self._meetings = str(self.root / "meetings")

    def meeting_dir(self, meeting_id: str) -> Path:
        return Path(self._meetings, check_meeting_id(meeting_id))

    def chunk_path(self, meeting_id: str, seq: int) -> Path:
        return Path(self._chunk_file(meeting_id, seq))

    def _chunk_file(self, meeting_id: str, seq: int) -> str:
        """:meth:`chunk_path` as a string: no path object per chunk on the group commit's path."""
        return os.path.join(
            self._meetings, check_meeting_id(meeting_id), "chunks", f"{check_seq(seq):08d}.wav"
        )

    def recording_path(self, meeting_id: str) -> Path:
        return self.meeting_dir(meeting_id) / "recording.wav"

    def put_chunk(self, meeting_id: str, seq: int, data: bytes | memoryview) -> None:
        """Write the chunk's file; with fsync on, the file and its folder are synced. A full disk is
        :class:`StorageFull` (nothing is left behind).

        Called only by the holder of the chunk's key: its row is inserted, and not yet committed, in the
        caller's transaction. So no one else writes this file meanwhile (a concurrent sender of the same
        seq waits on the key, then finds it held), and no reader opens it yet (readers read only chunks
        whose rows are committed, after the file is whole). The file is therefore written under its own
        name, without a temporary file and a rename (a rename cost the gateway a twentieth of its CPU at
        a few thousand chunks a second). A file left by an attempt that did not commit (a crash, a
        rollback) has no row: the key's next holder overwrites it."""
        self.put_chunks([(meeting_id, seq, data)])

    def put_chunks(self, chunks: Sequence[ChunkData]) -> None:
        """:meth:`put_chunk` for a group commit's chunks: all written, then (fsync on) all synced at
        once, in parallel, so the file system can commit them together instead of one journal commit
        after another; then each folder synced once. On any error the group's files are removed (their
        keys are still held, so they are no one else's) and nothing of the group is left.

        Plain descriptors, not file objects: a file object costs three more system calls per chunk
        (fstat, ioctl, lseek), and each one hands the GIL to the event loop and back."""
        written: list[_Written] = []
        try:
            for meeting_id, seq, data in chunks:
                path = self._chunk_file(meeting_id, seq)
                written.append(_Written(self._open_chunk(path), path))
                fileio.pwrite_all(written[-1].fd, data, 0)
                if not self.fsync:
                    written[-1].close()
            if self.fsync:
                _each(os.fsync, [one.fd for one in written])
                for one in written:
                    one.close()
                _each(_fsync_dir, list(dict.fromkeys(os.path.dirname(one.path) for one in written)))
        except BaseException as exc:
            for one in written:
                one.close()
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(one.path)
            if isinstance(exc, OSError) and exc.errno in _NO_ROOM:
                raise StorageFull("the data folder is full: the chunk was not stored; retry later") from exc
            raise

    def _open_chunk(self, path: str) -> int:
        """The chunk file at ``path`` opened for writing, created (with its folders, if missing) or
        emptied. The folder is assumed there, and made only when the open says it is not: every chunk
        but a meeting's first then costs no stat."""
        try:
            return os.open(path, _CREATE_OR_EMPTY, 0o600)
        except FileNotFoundError:
            self._make_folders(Path(os.path.dirname(path)))
            return os.open(path, _CREATE_OR_EMPTY, 0o600)

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

    def recording_turn(self, meeting_id: str) -> AbstractContextManager[None]:
        # Never create the meeting's folder: if it is gone, so is the meeting (see detach_meeting).
        return recording_lock(self.recording_path(meeting_id), create_parent=False)

    def open_for_append(self, meeting_id: str, fmt: AudioFormat) -> RecordingFile:
        return RecordingFile.open(self.recording_path(meeting_id), fmt, fsync=self.fsync, create_parent=False)

    def open_recording(self, meeting_id: str) -> RecordingFileReader:
        return RecordingFileReader.open(self.recording_path(meeting_id))

    def detach_meeting(self, meeting_id: str) -> Detached | None:
        """Move the meeting's folder out of the way in one step (a rename into ``<root>/deleting/``), so
        that nothing is read from or written into it by path any more; None if it has no folder. A worker
        that still holds one of its files open writes into the moved file, never into a new one: the
        concat worker opens recordings without creating the folder (see :meth:`recording_turn`)."""
        folder = self.meeting_dir(meeting_id)
        detached = Detached(meeting_id, f"{folder.name}.{secrets.token_hex(6)}")
        trash = self._trash(detached)
        trash.parent.mkdir(parents=True, exist_ok=True)
        try:
            folder.rename(trash)
        except FileNotFoundError:
            return None
        return detached

    def _trash(self, detached: Detached) -> Path:
        return self.root / "deleting" / detached.key

    def reattach_meeting(self, meeting_id: str, detached: Detached) -> None:
        """Undo :meth:`detach_meeting` (the deletion it was part of failed)."""
        self._trash(detached).rename(self.meeting_dir(meeting_id))

    def purge(self, detached: Detached) -> None:
        """Remove a detached folder for good."""
        shutil.rmtree(self._trash(detached), ignore_errors=True)

    def delete_meeting(self, meeting_id: str) -> None:
        detached = self.detach_meeting(meeting_id)
        if detached is not None:
            self.purge(detached)
