"""The open recording: appends, recovery after a crash, and reads of its index (see the package's
docstring for the files and the order of an append)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from audioflow.core.errors import FormatMismatch, InvalidWav, RecordingCorrupt, RecordingFull
from audioflow.core.fileio import create_atomically, pread_exact, pwrite_all
from audioflow.core.recording.index import (
    HEADER_SIZE,
    INDEX_MAGIC,
    RECORD_SIZE,
    Entry,
    Kind,
    decode_record,
    encode_record,
    index_path,
)
from audioflow.core.wav import MAX_DATA_LENGTH, AudioFormat, canonical_header, read_canonical_header

logger = logging.getLogger("audioflow.core.recording")


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
            create_atomically(path, canonical_header(fmt, 0), fsync=fsync)
        if not idx.exists():
            size = path.stat().st_size
            if size > HEADER_SIZE:
                raise RecordingCorrupt(
                    f"recording {path} holds {size - HEADER_SIZE} bytes of audio "
                    f"but its index {idx} is missing"
                )
            create_atomically(idx, INDEX_MAGIC, fsync=fsync)

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
            found, declared = read_canonical_header(pread_exact(wav_fd, HEADER_SIZE, 0))
        except InvalidWav as exc:
            raise RecordingCorrupt(f"recording {path} does not start with a canonical header: {exc}") from exc
        if found != fmt:
            raise FormatMismatch(
                f"recording {path} is {found.describe()}, but {fmt.describe()} was asked for"
            )
        notes: list[str] = []

        # The index: cut a torn or zero-filled tail, then trust its last record.
        idx_size = os.fstat(idx_fd).st_size
        if pread_exact(idx_fd, RECORD_SIZE, 0) != INDEX_MAGIC:
            raise RecordingCorrupt(f"{idx} is not an audioflow recording index (bad first record)")
        count = (idx_size - RECORD_SIZE) // RECORD_SIZE
        torn = idx_size - RECORD_SIZE * (count + 1)
        if torn:
            notes.append(f"cut a torn index record ({torn} bytes)")
        last: Entry | None = None
        while count > 0:
            raw = pread_exact(idx_fd, RECORD_SIZE, RECORD_SIZE * count)
            if not raw.strip(b"\0"):
                notes.append(f"cut a zero-filled index record for seq {count - 1}")
                count -= 1
                continue
            last = decode_record(raw)
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
        expected = HEADER_SIZE + data_length
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
            pwrite_all(wav_fd, canonical_header(fmt, data_length), 0)
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
        return HEADER_SIZE + self._data_length

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
        raw = pread_exact(self._idx_fd, RECORD_SIZE, RECORD_SIZE * (seq + 1))
        found = decode_record(raw)
        if found is None or found.seq != seq:
            raise RecordingCorrupt(f"{self.index_path}: record {seq + 1} is not a valid entry for seq {seq}")
        return found

    def _load_entries(self) -> list[Entry]:
        self._check_usable()
        size = RECORD_SIZE * (self._next_seq + 1)
        raw = pread_exact(self._idx_fd, size - RECORD_SIZE, RECORD_SIZE)
        entries: list[Entry] = []
        offset = 0
        for seq in range(self._next_seq):
            record = raw[seq * RECORD_SIZE : (seq + 1) * RECORD_SIZE]
            found = decode_record(record)
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
        wav_end = HEADER_SIZE + self._data_length
        idx_end = RECORD_SIZE * (seq + 1)
        try:
            pwrite_all(self._wav_fd, view, wav_end)
            if self.fsync:
                os.fdatasync(self._wav_fd)
            pwrite_all(self._idx_fd, encode_record(entry), idx_end)
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
            pwrite_all(self._wav_fd, canonical_header(self.format, self._data_length), 0)
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
