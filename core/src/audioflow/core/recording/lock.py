"""Taking turns on a recording across processes (``flock``), and what a reader may serve without a lock."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from audioflow.core.errors import InvalidWav, RecordingCorrupt
from audioflow.core.fileio import pread_exact
from audioflow.core.recording.file import RecordingFile
from audioflow.core.recording.index import HEADER_SIZE, lock_path
from audioflow.core.wav import AudioFormat, read_canonical_header


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
        head = pread_exact(source, HEADER_SIZE, 0)
        size = os.fstat(source).st_size
        name: object = f"fd {source}"
    else:
        with open(source, "rb") as file:
            head = file.read(HEADER_SIZE)
            size = os.fstat(file.fileno()).st_size
        name = source
    try:
        fmt, declared = read_canonical_header(head)
    except InvalidWav as exc:
        raise RecordingCorrupt(f"recording {name} does not start with a canonical header: {exc}") from exc
    length = min(HEADER_SIZE + declared, size)
    length -= (length - HEADER_SIZE) % fmt.block_align
    return fmt, length


def same_file(path: Path, fd: int) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (False once it is removed or replaced)."""
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)
