"""Staging for the concat section: recordings grown to a length fast, chunks put where the gateway would,
the naive rewrite-the-whole-file append, and the kernel's I/O counters of a process.

A long recording is grown with the appender's own API (``RecordingFile.append``, one entry per chunk, the
same index a real meeting has) with ``fsync=False``, then flushed once with ``os.sync``: 36,000 real
appends of 1 s build 10 h (1.15 GB) in a few seconds. The database gets one ``chunks`` row per seq by a
bulk insert, and its ``recordings`` row says what the file holds, so the worker sees what it would
after a 10 h meeting.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import redis
from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

from audioflow.core.db import queries
from audioflow.core.db.engine import transaction
from audioflow.core.db.models import Chunk, Recording
from audioflow.core.keys import Keys
from audioflow.core.recording import locked_recording
from audioflow.core.storage import LocalStorage
from audioflow.core.streams.queues import enqueue
from audioflow.core.wav import CANONICAL_HEADER_SIZE, AudioFormat, canonical_header
from audioflow.workers.simulate import load_speech
from bench.common import Unmeasured

_INSERT_BATCH = 5000
WAIT_S = 60.0


@dataclass(frozen=True)
class Io:
    """``/proc/<pid>/io``: bytes passed to write syscalls, and bytes dirtied for the storage layer."""

    wchar: int
    write_bytes: int

    @classmethod
    def of(cls, pid: int | str = "self") -> Io:
        fields = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
        return cls(int(fields["wchar"]), int(fields["write_bytes"]))

    def __add__(self, other: Io) -> Io:
        return Io(self.wchar + other.wchar, self.write_bytes + other.write_bytes)

    def __sub__(self, other: Io) -> Io:
        return Io(self.wchar - other.wchar, self.write_bytes - other.write_bytes)


def memory(pid: int) -> tuple[int, int]:
    """``(VmRSS, VmHWM)`` of a process in bytes: its resident set now, and the largest it has had."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0]) * 1024
    if len(found) != 2:
        raise Unmeasured(f"no VmRSS/VmHWM in /proc/{pid}/status")
    return found["VmRSS"], found["VmHWM"]


class Audio:
    """Speech PCM of any length, cut from the looped fixture (content does not change append cost)."""

    def __init__(self) -> None:
        self.format, pcm = load_speech()
        self._pcm = pcm * 2  # so that any slice up to the fixture's length can start anywhere in it

    def pcm(self, seconds: float, index: int = 0) -> bytes:
        size = round(seconds * self.format.sample_rate) * self.format.block_align
        if size * 2 > len(self._pcm):
            raise ValueError(f"{seconds} s is longer than the fixture")
        start = (index * size) % (len(self._pcm) // 2)
        start -= start % self.format.block_align
        return self._pcm[start : start + size]


@dataclass
class Meeting:
    """One meeting's recording and database rows, grown by the bench while no worker touches it."""

    id: str
    chunk_s: float
    audio: Audio
    storage: LocalStorage
    sessions: sessionmaker[Session]

    @property
    def fmt(self) -> AudioFormat:
        return self.audio.format

    @property
    def path(self) -> Path:
        return self.storage.recording_path(self.id)

    def create(self) -> None:
        with transaction(self.sessions) as session:
            queries.create_meeting(session, self.id, self.fmt)

    def grow_to(self, length_s: float) -> int:
        """Append chunks (fsync off, then one sync) until the recording holds ``length_s``; returns the
        next seq. Rows for the new seqs go into the database afterwards, so no worker sees a row whose
        audio is not in the recording yet."""
        with locked_recording(self.path, self.fmt, fsync=False) as rec:
            first = rec.next_seq
            pcm = self.audio.pcm(self.chunk_s)
            while rec.duration_s < length_s - 1e-9:
                rec.append(rec.next_seq, pcm)
            last = rec.next_seq
        os.sync()
        self.add_rows(range(first, last), len(pcm))
        return last

    def add_rows(self, seqs: range, data_bytes: int) -> None:
        """Rows for seqs already in the recording: ``chunks`` (bulk, what the gateway would have written)
        and the ``recordings`` row (what the worker would have mirrored, a chunk at a time)."""
        now = datetime.now(UTC)
        rows = [
            {
                "meeting_id": self.id,
                "seq": seq,
                "sha256": "0" * 64,
                "size_bytes": data_bytes + CANONICAL_HEADER_SIZE,
                "data_bytes": data_bytes,
                "duration_s": data_bytes / self.fmt.block_align / self.fmt.sample_rate,
                "received_at": now,
            }
            for seq in seqs
        ]
        for start in range(0, len(rows), _INSERT_BATCH):
            with transaction(self.sessions) as session:
                session.execute(insert(Chunk), rows[start : start + _INSERT_BATCH])
        with locked_recording(self.path, self.fmt, fsync=False) as rec, transaction(self.sessions) as session:
            row = queries.get_recording(session, self.id)
            if row is None:
                row = Recording(meeting_id=self.id)
                session.add(row)
            row.concatenated_through = rec.held_through
            row.data_bytes = rec.data_length
            row.duration_s = rec.duration_s
            row.updated_at = now

    def stage_chunk(self, seq: int, pcm: bytes) -> None:
        """What the gateway does before it enqueues: the chunk file, then its row."""
        body = canonical_header(self.fmt, len(pcm)) + pcm
        self.storage.put_chunk(self.id, seq, body)
        with transaction(self.sessions) as session:
            queries.insert_chunk(
                session,
                self.id,
                seq,
                sha256=hashlib.sha256(body).hexdigest(),
                size_bytes=len(body),
                data_bytes=len(pcm),
                duration_s=len(pcm) / self.fmt.block_align / self.fmt.sample_rate,
            )


def event_cursor(client: redis.Redis, keys: Keys, meeting: Meeting) -> str:
    """The id of the meeting's newest event (read before staging, so nothing after it is missed)."""
    last = client.xrevrange(keys.events(meeting.id), count=1)
    return str(last[0][0]) if last else "0-0"


def worker_append(client: redis.Redis, keys: Keys, meeting: Meeting, seq: int, cursor: str) -> float | None:
    """Enqueue ``seq``'s concat work (as the gateway does) and wait for the worker's
    ``recording.extended`` that covers it; returns the seconds in between, or None when the worker's
    periodic gap sweep appended the staged chunk before the work was even enqueued (not a sample)."""
    stream = keys.events(meeting.id)
    enqueued_at = time.time()
    started = time.perf_counter()
    enqueue(client, keys.concat, {"meeting_id": meeting.id, "seq": seq})
    deadline = started + WAIT_S
    while time.perf_counter() < deadline:
        got: list[tuple[str, list[tuple[str, dict[str, str]]]]] = client.xread(  # type: ignore[assignment]
            {stream: cursor}, block=1000, count=100
        )
        for _, entries in got:
            for event_id, fields in entries:
                cursor = event_id
                if fields.get("type") != "recording.extended":
                    continue
                if json.loads(fields["data"])["concatenated_through"] >= seq:
                    took = time.perf_counter() - started
                    return None if float(fields["ts"]) < enqueued_at else took
    raise Unmeasured(f"the concat worker did not append {meeting.id}/{seq} within {WAIT_S:.0f} s")


def naive_append(source: Path, target: Path, fmt: AudioFormat, pcm: bytes) -> None:
    """The baseline: write a new file holding the old one plus the chunk, fsync it, rename it over."""
    tmp = target.with_name(target.name + ".tmp")
    with source.open("rb") as old, tmp.open("wb") as new:
        old.seek(CANONICAL_HEADER_SIZE)
        data_length = os.fstat(old.fileno()).st_size - CANONICAL_HEADER_SIZE + len(pcm)
        new.write(canonical_header(fmt, data_length))
        shutil.copyfileobj(old, new, 1 << 20)
        new.write(pcm)
        new.flush()
        os.fsync(new.fileno())
    os.replace(tmp, target)
