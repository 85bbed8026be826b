"""The append-only meeting recording on disk: one growing canonical WAV plus a sidecar index.

Files, for a recording at ``path`` (say ``recording.wav``):

- ``recording.wav``: a canonical 44-byte WAV header, then the PCM of seq 0, 1, 2, ... back to back.
  Its RIFF and ``data`` sizes always describe a prefix of the file that is fully written and indexed,
  so a reader may serve ``44 + data size`` bytes at any moment (:func:`snapshot_length`).
- ``recording.wav.idx``: the index, which is authoritative. Fixed-size ASCII records of
  :data:`RECORD_SIZE` (41) bytes, so it can be read with ``cat`` and addressed by seq without a scan::

      audioflow-recording-index v1            \\n      <- record 0: magic, padded to 40 bytes + newline
      0000000000 0000000000 0000032000 chunk  \\n      <- record k+1 describes seq k:
      0000000001 0000032000 0000032000 silence\\n         seq, byte offset of its PCM within the data,
                                                         length in bytes, kind ("chunk" or "silence")

  Seqs are held contiguously from 0: record ``k+1`` is seq ``k`` and its offset is the sum of the
  lengths before it.
- ``recording.wav.lock``: an empty file that :func:`locked_recording` ``flock``\\s.

An append is O(chunk) and never rewrites the file, in this order:

1. write the PCM at the end of the WAV (``fdatasync`` when ``fsync=True``);
2. write the index record (``fdatasync`` when ``fsync=True``): this is the commit point;
3. patch the RIFF size (offset 4) and ``data`` size (offset 40) in place.

The header is patched last so that it never covers bytes a crash could still take back: readers that
trust it see only committed audio. The header itself is made durable on :meth:`RecordingFile.close` and
repaired on open if a crash lost it. :meth:`RecordingFile.open` recovers from a crash at any step: PCM
past the last index record is cut off, a torn (partial) or zero-filled last index record is cut off,
and the header sizes are re-patched from the index.

A :class:`RecordingFile` has a single writer at a time and is not thread-safe; processes that share one
recording go through :func:`locked_recording`.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, Literal, TypeAlias

from audioflow.core.errors import FormatMismatch, InvalidWav, RecordingCorrupt, RecordingFull
from audioflow.core.wav import (
    CANONICAL_HEADER_SIZE,
    MAX_DATA_LENGTH,
    AudioFormat,
    canonical_header,
    read_canonical_header,
)

__all__ = [
    "INDEX_SUFFIX",
    "LOCK_SUFFIX",
    "RECORD_SIZE",
    "Entry",
    "Kind",
    "RecordingFile",
    "index_path",
    "lock_path",
    "locked_recording",
    "recording_lock",
    "same_file",
    "snapshot_length",
]

logger = logging.getLogger(__name__)

Kind: TypeAlias = Literal["chunk", "silence"]

INDEX_SUFFIX: Final = ".idx"
LOCK_SUFFIX: Final = ".lock"
RECORD_SIZE: Final = 41
INDEX_MAGIC: Final = b"audioflow-recording-index v1".ljust(RECORD_SIZE - 1) + b"\n"
_RECORD = re.compile(rb"([0-9]{10}) ([0-9]{10}) ([0-9]{10}) (chunk  |silence)\n")
_HEADER_SIZE: Final = CANONICAL_HEADER_SIZE


@dataclass(frozen=True)
class Entry:
    """One held seq: its PCM is ``length`` bytes at ``offset`` within the WAV's data."""

    seq: int
    offset: int
    length: int
    kind: Kind

    @property
    def end(self) -> int:
        """Offset within the data just past this entry's PCM."""
        return self.offset + self.length


def index_path(path: Path) -> Path:
    """The sidecar index of the recording at ``path``."""
    return path.with_name(path.name + INDEX_SUFFIX)


def lock_path(path: Path) -> Path:
    """The lock file :func:`locked_recording` uses for the recording at ``path``."""
    return path.with_name(path.name + LOCK_SUFFIX)


def _encode_record(entry: Entry) -> bytes:
    line = f"{entry.seq:010d} {entry.offset:010d} {entry.length:010d} {entry.kind:<7}\n".encode("ascii")
    assert len(line) == RECORD_SIZE
    return line


def _decode_record(raw: bytes) -> Entry | None:
    match = _RECORD.fullmatch(raw)
    if match is None:
        return None
    kind: Kind = "chunk" if match.group(4) == b"chunk  " else "silence"
    return Entry(int(match.group(1)), int(match.group(2)), int(match.group(3)), kind)


def _pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    view = memoryview(data)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def _pread_exact(fd: int, size: int, offset: int) -> bytes:
    """Read ``size`` bytes at ``offset``; fewer only at end of file."""
    parts: list[bytes] = []
    while size > 0:
        part = os.pread(fd, size, offset)
        if not part:
            break
        parts.append(part)
        size -= len(part)
        offset += len(part)
    return b"".join(parts)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _create_atomically(path: Path, content: bytes, *, fsync: bool) -> None:
    """Create ``path`` holding ``content``, all or nothing (temporary file, then rename)."""
    tmp = path.with_name(f".{path.name}.creating")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        _pwrite_all(fd, content, 0)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if fsync:
        _fsync_dir(path.parent)


class RecordingFile:
    """An open append-only recording. Build one with :meth:`open` (or :func:`locked_recording`)."""

    def __init__(
        self,
        *,
        path: Path,
        fmt: AudioFormat,
        wav_fd: int,
        idx_fd: int,
        next_seq: int,
        data_length: int,
        fsync: bool,
        recovered: tuple[str, ...],
    ) -> None:
        self.path = path
        self.index_path = index_path(path)
        self.format = fmt
        self.fsync = fsync
        #: What :meth:`open` repaired after a crash (empty when the files were consistent).
        self.recovered = recovered
        self._wav_fd = wav_fd
        self._idx_fd = idx_fd
        self._next_seq = next_seq
        self._data_length = data_length
        self._entries: list[Entry] | None = None
        self._closed = False
        self._broken = False

    # -- opening and recovery -------------------------------------------------------------------------

    @classmethod
    def open(
        cls, path: Path, fmt: AudioFormat, *, fsync: bool = True, create_parent: bool = True
    ) -> RecordingFile:
        """Open the recording at ``path``, creating it (empty) if missing and recovering from a crash.

        Raises :class:`FormatMismatch` if an existing recording has another format, and
        :class:`RecordingCorrupt` if the files contradict each other beyond what a crash can explain.
        With ``create_parent`` false, a missing folder is ``FileNotFoundError`` rather than created.
        """
        path = Path(path)
        idx = index_path(path)
        if create_parent:
            path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            if idx.exists() and idx.stat().st_size > RECORD_SIZE:
                raise RecordingCorrupt(f"recording {path} is missing but its index {idx} lists audio")
            _create_atomically(path, canonical_header(fmt, 0), fsync=fsync)
        if not idx.exists():
            size = path.stat().st_size
            if size > _HEADER_SIZE:
                raise RecordingCorrupt(
                    f"recording {path} holds {size - _HEADER_SIZE} bytes of audio "
                    f"but its index {idx} is missing"
                )
            _create_atomically(idx, INDEX_MAGIC, fsync=fsync)

        wav_fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        idx_fd = -1
        try:
            idx_fd = os.open(idx, os.O_RDWR | os.O_CLOEXEC)
            return cls._recover(path, fmt, wav_fd, idx_fd, fsync=fsync)
        except BaseException:
            os.close(wav_fd)
            if idx_fd >= 0:
                os.close(idx_fd)
            raise

    @classmethod
    def _recover(
        cls, path: Path, fmt: AudioFormat, wav_fd: int, idx_fd: int, *, fsync: bool
    ) -> RecordingFile:
        idx = index_path(path)
        try:
            found, declared = read_canonical_header(_pread_exact(wav_fd, _HEADER_SIZE, 0))
        except InvalidWav as exc:
            raise RecordingCorrupt(f"recording {path} does not start with a canonical header: {exc}") from exc
        if found != fmt:
            raise FormatMismatch(
                f"recording {path} is {found.describe()}, but {fmt.describe()} was asked for"
            )
        notes: list[str] = []

        # The index: cut a torn or zero-filled tail, then trust its last record.
        idx_size = os.fstat(idx_fd).st_size
        if _pread_exact(idx_fd, RECORD_SIZE, 0) != INDEX_MAGIC:
            raise RecordingCorrupt(f"{idx} is not an audioflow recording index (bad first record)")
        count = (idx_size - RECORD_SIZE) // RECORD_SIZE
        torn = idx_size - RECORD_SIZE * (count + 1)
        if torn:
            notes.append(f"cut a torn index record ({torn} bytes)")
        last: Entry | None = None
        while count > 0:
            raw = _pread_exact(idx_fd, RECORD_SIZE, RECORD_SIZE * count)
            if not raw.strip(b"\0"):
                notes.append(f"cut a zero-filled index record for seq {count - 1}")
                count -= 1
                continue
            last = _decode_record(raw)
            if last is None or last.seq != count - 1:
                raise RecordingCorrupt(
                    f"{idx}: record {count} is not a valid entry for seq {count - 1}: {raw!r}"
                )
            if last.length <= 0 or last.length % fmt.block_align or last.end > MAX_DATA_LENGTH:
                raise RecordingCorrupt(f"{idx}: entry for seq {last.seq} has an impossible extent: {raw!r}")
            break
        if RECORD_SIZE * (count + 1) != idx_size:
            os.ftruncate(idx_fd, RECORD_SIZE * (count + 1))
        data_length = last.end if last is not None else 0

        # The WAV: exactly header + indexed data.
        wav_size = os.fstat(wav_fd).st_size
        expected = _HEADER_SIZE + data_length
        if wav_size < expected:
            raise RecordingCorrupt(
                f"recording {path} is {wav_size} bytes but its index accounts for {expected} "
                f"(seqs 0..{count - 1}): indexed audio is missing"
            )
        if wav_size > expected:
            notes.append(f"cut {wav_size - expected} bytes of audio written after the last indexed seq")
            os.ftruncate(wav_fd, expected)
        if declared != data_length:
            notes.append(f"re-patched the header data size from {declared} to {data_length}")
            _pwrite_all(wav_fd, canonical_header(fmt, data_length), 0)
        if notes:
            logger.warning("recording %s recovered after a crash: %s", path, "; ".join(notes))
            if fsync:
                os.fsync(wav_fd)
                os.fsync(idx_fd)
        return cls(
            path=path,
            fmt=fmt,
            wav_fd=wav_fd,
            idx_fd=idx_fd,
            next_seq=count,
            data_length=data_length,
            fsync=fsync,
            recovered=tuple(notes),
        )

    # -- state ----------------------------------------------------------------------------------------

    @property
    def next_seq(self) -> int:
        """The lowest seq not held; the seqs held are exactly ``range(next_seq)``."""
        return self._next_seq

    @property
    def held_through(self) -> int:
        """The highest seq held (every seq up to it is held), -1 when empty."""
        return self._next_seq - 1

    @property
    def data_length(self) -> int:
        """Bytes of PCM held."""
        return self._data_length

    @property
    def file_length(self) -> int:
        """Bytes of the WAV file: header plus PCM."""
        return _HEADER_SIZE + self._data_length

    @property
    def duration_s(self) -> float:
        return self._data_length // self.format.block_align / self.format.sample_rate

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def entries(self) -> Sequence[Entry]:
        """Every held entry in seq order (read from the index, and checked, on first use)."""
        if self._entries is None:
            self._entries = self._load_entries()
        return tuple(self._entries)

    def holds(self, seq: int) -> bool:
        return 0 <= seq < self._next_seq

    def entry(self, seq: int) -> Entry | None:
        """The entry for ``seq``, or None if it is not held."""
        if not self.holds(seq):
            return None
        if self._entries is not None:
            return self._entries[seq]
        self._check_usable()
        raw = _pread_exact(self._idx_fd, RECORD_SIZE, RECORD_SIZE * (seq + 1))
        found = _decode_record(raw)
        if found is None or found.seq != seq:
            raise RecordingCorrupt(f"{self.index_path}: record {seq + 1} is not a valid entry for seq {seq}")
        return found

    def _load_entries(self) -> list[Entry]:
        self._check_usable()
        size = RECORD_SIZE * (self._next_seq + 1)
        raw = _pread_exact(self._idx_fd, size - RECORD_SIZE, RECORD_SIZE)
        entries: list[Entry] = []
        offset = 0
        for seq in range(self._next_seq):
            record = raw[seq * RECORD_SIZE : (seq + 1) * RECORD_SIZE]
            found = _decode_record(record)
            if (
                found is None
                or found.seq != seq
                or found.offset != offset
                or found.length <= 0
                or found.length % self.format.block_align
            ):
                raise RecordingCorrupt(
                    f"{self.index_path}: record {seq + 1} is not a valid entry for seq {seq} "
                    f"at data offset {offset}: {record!r}"
                )
            entries.append(found)
            offset = found.end
        if offset != self._data_length:
            raise RecordingCorrupt(
                f"{self.index_path}: entries cover {offset} bytes, not {self._data_length}"
            )
        return entries

    # -- appending ------------------------------------------------------------------------------------

    def append(self, seq: int, pcm: bytes | bytearray | memoryview) -> Entry | None:
        """Append ``pcm`` as ``seq``; None (and nothing written) if ``seq`` is already held.

        Raises ValueError if ``seq`` is not the next one or ``pcm`` is not whole frames, and
        :class:`RecordingFull` (writing nothing) if the WAV would pass its 4 GiB limit.
        """
        return self._append(seq, pcm, "chunk")

    def append_silence(self, seq: int, frames: int) -> Entry | None:
        """Append ``frames`` frames of silence as ``seq`` (a bridged gap); same rules as :meth:`append`."""
        if isinstance(frames, bool) or not isinstance(frames, int) or frames <= 0:
            raise ValueError(f"silence for seq {seq} must be a positive number of frames, not {frames!r}")
        self._check_usable()
        if self._is_held(seq):
            return None
        return self._append(seq, self.format.silence(frames), "silence")

    def _is_held(self, seq: int) -> bool:
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
            raise ValueError(f"seq must be a non-negative integer, not {seq!r}")
        return seq < self._next_seq

    def _append(self, seq: int, pcm: bytes | bytearray | memoryview, kind: Kind) -> Entry | None:
        self._check_usable()
        if self._is_held(seq):
            return None
        if seq > self._next_seq:
            raise ValueError(
                f"seq {seq} cannot be appended to {self.path}: it holds seqs through {self.held_through}, "
                f"so the next must be {self._next_seq}"
            )
        view = memoryview(pcm)
        length = view.nbytes
        block_align = self.format.block_align
        if length <= 0 or length % block_align:
            raise ValueError(
                f"seq {seq}: {length} bytes of PCM is not a positive multiple of the "
                f"{block_align}-byte frame ({self.format.describe()})"
            )
        if self._data_length + length > MAX_DATA_LENGTH:
            raise RecordingFull(
                f"recording {self.path} holds {self._data_length} bytes of audio; seq {seq} ({length} bytes) "
                f"would take it past the WAV limit of {MAX_DATA_LENGTH} bytes"
            )
        entry = Entry(seq=seq, offset=self._data_length, length=length, kind=kind)
        wav_end = _HEADER_SIZE + self._data_length
        idx_end = RECORD_SIZE * (seq + 1)
        try:
            _pwrite_all(self._wav_fd, view, wav_end)
            if self.fsync:
                os.fdatasync(self._wav_fd)
            _pwrite_all(self._idx_fd, _encode_record(entry), idx_end)
            if self.fsync:
                os.fdatasync(self._idx_fd)
        except BaseException:
            self._roll_back(wav_end, idx_end)
            raise
        # Committed: the index holds the entry.
        self._next_seq = seq + 1
        self._data_length = entry.end
        if self._entries is not None:
            self._entries.append(entry)
        try:
            _pwrite_all(self._wav_fd, canonical_header(self.format, self._data_length), 0)
        except OSError:
            # Readers keep seeing the previous, still consistent, size; the next append or open re-patches.
            logger.exception("recording %s: could not patch the header after seq %d", self.path, seq)
        return entry

    def _roll_back(self, wav_end: int, idx_end: int) -> None:
        try:
            os.ftruncate(self._idx_fd, idx_end)
            os.ftruncate(self._wav_fd, wav_end)
        except OSError:
            logger.exception("recording %s: could not roll back a failed append", self.path)
            self._broken = True

    def _check_usable(self) -> None:
        if self._closed:
            raise ValueError(f"recording {self.path} is closed")
        if self._broken:
            raise RecordingCorrupt(
                f"recording {self.path} is in an unknown state after a failed write; reopen it to recover"
            )

    # -- closing --------------------------------------------------------------------------------------

    def close(self) -> None:
        """Make the header durable (when ``fsync``) and release the files. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.fsync and not self._broken:
                os.fsync(self._wav_fd)
        finally:
            os.close(self._wav_fd)
            os.close(self._idx_fd)

    def __enter__(self) -> RecordingFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"held_through={self.held_through}"
        return (
            f"<RecordingFile {str(self.path)!r} {self.format.describe()} {state} bytes={self._data_length}>"
        )


def _acquire(fd: int, where: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    delay = 0.001
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"timed out after {timeout_s:g} s waiting for the lock {where}: "
                    "another process is writing this recording"
                ) from None
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.05)


@contextlib.contextmanager
def recording_lock(path: Path, *, timeout_s: float = 30.0, create_parent: bool = True) -> Iterator[None]:
    """Hold the exclusive lock of the recording at ``path`` (an ``flock`` on ``<path>.lock``).

    Any number of processes (on one host, or on a shared volume whose filesystem supports ``flock``) take
    turns; the kernel releases the lock if its holder dies, even by SIGKILL. The lock file may be removed
    (a meeting deleted) while others wait on it: a lock obtained on a file no longer at ``path`` is let go
    and taken again on the file that is there now, so two holders never hold different files. With
    ``create_parent`` false, a missing folder is ``FileNotFoundError`` (the meeting is gone) instead of
    being created again. Raises TimeoutError if the lock is not obtained within ``timeout_s`` seconds.
    """
    path = Path(path)
    where = lock_path(path)
    deadline = time.monotonic() + timeout_s
    while True:
        if create_parent:
            where.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(where, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            _acquire(fd, where, max(0.0, deadline - time.monotonic()))
            try:
                current = os.stat(where)
            except FileNotFoundError:
                current = None
            held = os.fstat(fd)
            if current is None or (current.st_dev, current.st_ino) != (held.st_dev, held.st_ino):
                fcntl.flock(fd, fcntl.LOCK_UN)
                continue  # removed or replaced while we waited: lock what is there now
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
            return
        finally:
            os.close(fd)


@contextlib.contextmanager
def locked_recording(
    path: Path, fmt: AudioFormat, *, fsync: bool = True, timeout_s: float = 30.0, create_parent: bool = True
) -> Iterator[RecordingFile]:
    """Open the recording at ``path`` while holding its lock (see :func:`recording_lock`); the next holder
    after a holder that died recovers the files on open."""
    with (
        recording_lock(path, timeout_s=timeout_s, create_parent=create_parent),
        RecordingFile.open(path, fmt, fsync=fsync, create_parent=create_parent) as recording,
    ):
        yield recording


def snapshot_length(source: Path | int) -> tuple[AudioFormat, int]:
    """``(format, length)`` of the consistent prefix of a recording a reader may serve right now.

    ``source`` is the recording's path, or a file descriptor open on it (a reader that holds the file
    keeps reading the same file even if it is removed or replaced meanwhile). ``length`` counts the
    header: ``44 + declared data size``, never more than the file's size and always whole frames. Needs
    no lock: the header only ever covers committed audio.
    """
    if isinstance(source, int):
        head = _pread_exact(source, _HEADER_SIZE, 0)
        size = os.fstat(source).st_size
        name: object = f"fd {source}"
    else:
        with open(source, "rb") as file:
            head = file.read(_HEADER_SIZE)
            size = os.fstat(file.fileno()).st_size
        name = source
    try:
        fmt, declared = read_canonical_header(head)
    except InvalidWav as exc:
        raise RecordingCorrupt(f"recording {name} does not start with a canonical header: {exc}") from exc
    length = min(_HEADER_SIZE + declared, size)
    length -= (length - _HEADER_SIZE) % fmt.block_align
    return fmt, length


def same_file(path: Path, fd: int) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (False once it is removed or replaced)."""
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)
