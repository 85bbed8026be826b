"""The recording's sidecar index: its fixed-size records, and the names of the files beside the WAV."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, TypeAlias

from audioflow.core.wav import CANONICAL_HEADER_SIZE

Kind: TypeAlias = Literal["chunk", "silence"]

INDEX_SUFFIX: Final = ".idx"
LOCK_SUFFIX: Final = ".lock"
RECORD_SIZE: Final = 41
INDEX_MAGIC: Final = b"audioflow-recording-index v1".ljust(RECORD_SIZE - 1) + b"\n"
_RECORD = re.compile(rb"([0-9]{10}) ([0-9]{10}) ([0-9]{10}) (chunk  |silence)\n")
HEADER_SIZE: Final = CANONICAL_HEADER_SIZE


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


def encode_record(entry: Entry) -> bytes:
    line = f"{entry.seq:010d} {entry.offset:010d} {entry.length:010d} {entry.kind:<7}\n".encode("ascii")
    assert len(line) == RECORD_SIZE
    return line


def decode_record(raw: bytes) -> Entry | None:
    match = _RECORD.fullmatch(raw)
    if match is None:
        return None
    kind: Kind = "chunk" if match.group(4) == b"chunk  " else "silence"
    return Entry(int(match.group(1)), int(match.group(2)), int(match.group(3)), kind)
