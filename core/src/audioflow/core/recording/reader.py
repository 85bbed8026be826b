"""A recording opened for reading by the local files: what a reader may serve, and whether it is still
the meeting's recording. Needs no lock: the header only ever covers committed audio."""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

from audioflow.core.fileio import pread_exact
from audioflow.core.recording.lock import same_file, snapshot_length
from audioflow.core.wav import AudioFormat


class RecordingFileReader:
    """The recording at ``path``, held open: a reader keeps the file it opened, so a meeting deleted (or
    its id reused) while it reads never cuts its answer short or switches files under it."""

    def __init__(self, path: Path, fd: int, fmt: AudioFormat) -> None:
        self._path = path
        self._fd = fd
        self._format = fmt

    @classmethod
    def open(cls, path: Path) -> RecordingFileReader:
        """FileNotFoundError if there is no recording; RecordingCorrupt if it has no canonical header."""
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            fmt, _ = snapshot_length(fd)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd, fmt)

    @property
    def format(self) -> AudioFormat:
        return self._format

    def committed(self) -> int:
        return snapshot_length(self._fd)[1]

    def read(self, offset: int, size: int) -> bytes:
        if self._fd < 0:  # never a descriptor the number may have been reused for
            raise OSError(f"recording {self._path} is closed")
        return pread_exact(self._fd, size, offset)

    def current(self) -> bool:
        return self._fd >= 0 and same_file(self._path, self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    def __enter__(self) -> RecordingFileReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
