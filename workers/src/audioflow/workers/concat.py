"""The concat worker: appends chunks to the meeting's recording strictly in seq order.

Every work entry, and the periodic gap sweep, calls :func:`advance` for the entry's meeting. Under the
recording's lock it appends every chunk that is next in line and present (so a predecessor's arrival
appends all its waiting successors), bridges a seq that has been missing for ``gap_timeout_s`` while
later ones wait with silence of its predecessor's length, and mirrors the recording's index into the
database and a ``recording.extended`` event, both inside the lock so ``concatenated_through`` never
goes backwards. Re-delivery changes nothing: the recording knows which seqs it holds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from audioflow.core.db import queries
from audioflow.core.db.engine import transaction
from audioflow.core.db.models import Chunk, Gap, Meeting, Recording
from audioflow.core.errors import RecordingFull
from audioflow.core.metrics import RECORDING_APPENDED_BYTES, RECORDING_GAPS
from audioflow.core.recording import Recording as RecordingFile
from audioflow.core.recording import locked_recording
from audioflow.core.storage import LocalStorage
from audioflow.core.streams import Entry, Outcome
from audioflow.core.wav import AudioFormat, parse_wav, pcm_view
from audioflow.workers.common import Publisher, Work, announce_if_completed, meeting_logger

log = meeting_logger("concat")

RECORDING_MARK = "recording"  # the concatenated_through last announced


@dataclass
class ConcatDeps:
    sessions: sessionmaker[Session]
    storage: LocalStorage
    publish: Publisher
    gap_timeout_s: float
    fsync: bool = True
    clock: Callable[[], float] = field(default=time.time)


@dataclass(frozen=True)
class Waiting:
    """What the database says has arrived for a meeting and is not recorded yet: seq → (PCM bytes,
    arrival time) for every seq after ``recorded_through``."""

    fmt: AudioFormat
    chunks: dict[int, tuple[int, float]]
    recorded_through: int
    failed: bool


def _waiting(session: Session, meeting: Meeting, after: int | None = None) -> Waiting:
    """Only the chunks after ``after`` (default: what the database says is recorded), so the cost of an
    advance does not grow with the length of the meeting."""
    recording = queries.get_recording(session, meeting.id)
    recorded_through = recording.concatenated_through if recording else -1
    since = recorded_through if after is None else after
    rows = session.execute(
        select(Chunk.seq, Chunk.data_bytes, Chunk.received_at).where(
            Chunk.meeting_id == meeting.id, Chunk.seq > since
        )
    ).all()
    return Waiting(
        fmt=queries.meeting_format(meeting),
        chunks={seq: (size, received.timestamp()) for seq, size, received in rows},
        recorded_through=recorded_through,
        failed=bool(recording and recording.failed_reason),
    )


def _silence_frames(rec: RecordingFile, waiting: Waiting, seq: int) -> int:
    """A missing chunk is assumed as long as its predecessor (else its successor)."""
    before = rec.entry(seq - 1)
    if before is not None:
        return before.length // rec.format.block_align
    later = min(s for s in waiting.chunks if s > seq)
    return waiting.chunks[later][0] // rec.format.block_align


def advance(deps: ConcatDeps, meeting_id: str) -> int:
    """Append everything that can be appended now; returns how many seqs were added."""
    with deps.sessions() as session:
        meeting = session.get(Meeting, meeting_id)
        if meeting is None:
            return 0
        waiting = _waiting(session, meeting)
    if (not waiting.chunks and waiting.recorded_through < 0) or waiting.failed:
        return 0
    path = deps.storage.recording_path(meeting_id)
    with locked_recording(path, waiting.fmt, fsync=deps.fsync) as rec:
        if rec.held_through < waiting.recorded_through:  # the file lost a tail the database recorded
            with deps.sessions() as session:
                meeting = session.get(Meeting, meeting_id)
                if meeting is None:  # deleted meanwhile (retention)
                    return 0
                waiting = _waiting(session, meeting, after=rec.held_through)
        added: list[int] = []
        bridged: list[tuple[int, int]] = []
        try:
            while True:
                seq = rec.next_seq
                if seq in waiting.chunks:
                    data = deps.storage.get_chunk(meeting_id, seq)
                    pcm = pcm_view(data, parse_wav(data))
                    rec.append(seq, pcm)
                    RECORDING_APPENDED_BYTES.labels("chunk").inc(len(pcm))
                    added.append(seq)
                    continue
                later = [arrived for s, (_, arrived) in waiting.chunks.items() if s > seq]
                if later and deps.clock() - min(later) >= deps.gap_timeout_s:
                    frames = _silence_frames(rec, waiting, seq)
                    rec.append_silence(seq, frames)
                    RECORDING_APPENDED_BYTES.labels("silence").inc(frames * rec.format.block_align)
                    RECORDING_GAPS.inc()
                    bridged.append((seq, frames))
                    added.append(seq)
                    continue
                break
        except RecordingFull as exc:
            _fail(deps, meeting_id, str(exc))
        # Also when only the event is missing: a worker killed after mirroring, before announcing.
        announced = deps.publish.announced(meeting_id, RECORDING_MARK)
        if added or rec.held_through != waiting.recorded_through or announced != str(rec.held_through):
            _mirror(deps, meeting_id, rec, bridged)
            for seq, frames in bridged:
                log.warning(
                    "seq %d never arrived within %.0f s: bridged with %.2f s of silence",
                    seq,
                    deps.gap_timeout_s,
                    frames / rec.format.sample_rate,
                    extra={"meeting_id": meeting_id, "seq": seq},
                )
            deps.publish.marked(
                meeting_id,
                "recording.extended",
                {
                    "concatenated_through": rec.held_through,
                    "duration_s": round(rec.duration_s, 3),
                    "bytes": rec.file_length,
                    "appended": added,
                    "gaps": [seq for seq, _ in bridged],
                },
                mark=RECORDING_MARK,
                value=str(rec.held_through),
                once=False,  # under the recording's lock: one announcer at a time
            )
    if added:
        announce_if_completed(deps.sessions, deps.publish, meeting_id)
    return len(added)


def _mirror(deps: ConcatDeps, meeting_id: str, rec: RecordingFile, bridged: list[tuple[int, int]]) -> None:
    """Make the database say what the recording's index says (it is the authority)."""
    with transaction(deps.sessions) as session:
        row = queries.get_recording(session, meeting_id)
        if row is None:
            row = Recording(meeting_id=meeting_id)
            session.add(row)
        row.concatenated_through = rec.held_through
        row.data_bytes = rec.data_length
        row.duration_s = rec.duration_s
        row.updated_at = datetime.now(UTC)
        for seq, frames in bridged:
            if session.get(Gap, (meeting_id, seq)) is None:
                session.add(Gap(meeting_id=meeting_id, seq=seq, frames=frames))


def _fail(deps: ConcatDeps, meeting_id: str, reason: str) -> None:
    with transaction(deps.sessions) as session:
        row = queries.get_recording(session, meeting_id)
        if row is None:
            row = Recording(meeting_id=meeting_id)
            session.add(row)
        row.failed_reason = reason
    deps.publish(meeting_id, "chunk.failed", {"stage": "concat", "reason": reason})
    log.error("recording failed: %s", reason, extra={"meeting_id": meeting_id})


def handle(entry: Entry, deps: ConcatDeps) -> Outcome:
    work = Work.of(entry)
    advance(deps, work.meeting_id)
    return Outcome.ACK


def meetings_waiting(sessions: sessionmaker[Session]) -> list[str]:
    """Meetings with chunks received beyond what their recording holds (candidates for the gap sweep)."""
    with sessions() as session:
        highest = (
            select(Chunk.meeting_id, func.max(Chunk.seq).label("highest"))
            .group_by(Chunk.meeting_id)
            .subquery()
        )
        rows = (
            session.execute(
                select(highest.c.meeting_id)
                .outerjoin(Recording, Recording.meeting_id == highest.c.meeting_id)
                .where(highest.c.highest > func.coalesce(Recording.concatenated_through, -1))
                .where(Recording.failed_reason.is_(None))
            )
            .scalars()
            .all()
        )
    return list(rows)


def sweep(deps: ConcatDeps) -> int:
    """Advance every meeting that has waiting chunks: bridges gaps whose timeout has passed."""
    return sum(advance(deps, meeting_id) for meeting_id in meetings_waiting(deps.sessions))
