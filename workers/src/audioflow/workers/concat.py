"""The concat worker: appends chunks to the meeting's recording strictly in seq order.

Every work entry, and the periodic gap sweep, calls :func:`advance` for the entry's meeting. Under the
recording's lock it appends every chunk that is next in line and present (so a predecessor's arrival
appends all its waiting successors), bridges a seq that has been missing for ``gap_timeout_s`` while
later ones wait with silence of its predecessor's length, and mirrors the recording's index into the
database and a ``recording.extended`` event, both inside the lock so ``concatenated_through`` never
goes backwards. Re-delivery changes nothing: the recording knows which seqs it holds.

Bounds: a run of missing seqs is bridged only if its silence stays within ``max_gap_s``, and nothing is
appended past ``max_meeting_s``; past either the recording fails once (``chunk.failed``), writing
nothing past the limit. Deletion: work names its meeting's generation; a step for a meeting that is gone
(deleted, or its id reused) does nothing, a step under way stops at its next append (the database is
asked at most every ``alive_check_s``), and the meeting's folder is never created here.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import sqlalchemy.exc
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from audioflow.core import announcements
from audioflow.core.db import queries
from audioflow.core.db.engine import transaction
from audioflow.core.db.models import Chunk, Gap, Meeting, Recording
from audioflow.core.errors import RecordingFull
from audioflow.core.event_payloads import ChunkFailed, RecordingExtended
from audioflow.core.metrics import RECORDING_APPENDED_BYTES, RECORDING_GAPS
from audioflow.core.storage import RecordingWriter, Storage
from audioflow.core.streams.consumer import Entry, Outcome
from audioflow.core.wav import AudioFormat, parse_wav, pcm_view
from audioflow.workers.publisher import Publisher, announce_if_completed
from audioflow.workers.work import Work

log = logging.getLogger(__name__)


@dataclass
class ConcatDeps:
    sessions: sessionmaker[Session]
    storage: Storage  # the interface (chunks and the recording): any backend, not only local files
    publish: Publisher
    gap_timeout_s: float
    clock: Callable[[], float] = field(default=time.time)
    max_gap_s: float = 600.0  # AUDIOFLOW_MAX_GAP_S
    max_meeting_s: float = 12 * 3600.0  # AUDIOFLOW_MAX_MEETING_S
    alive_check_s: float = 0.25  # how often a long step looks whether its meeting was deleted


@dataclass(frozen=True)
class Waiting:
    """What the database says has arrived for a meeting and is not recorded yet: seq → (PCM bytes,
    arrival time) for every seq after ``recorded_through``."""

    fmt: AudioFormat
    chunks: dict[int, tuple[int, float]]
    recorded_through: int
    failed: bool


class _Refused(Exception):
    """What comes next would pass a limit: the recording fails (once) instead."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


class _Gone(Exception):
    """The meeting was deleted (or its id now names another meeting): stop, write and announce nothing."""


@dataclass
class _Alive:
    """Whether the meeting a step works on still exists, asked of the database at most every
    ``alive_check_s`` (so a DELETE stops a long step promptly, at a bounded cost per append)."""

    deps: ConcatDeps
    meeting_id: str
    generation: str
    checked: float = float("-inf")

    def now(self) -> bool:
        with self.deps.sessions() as session:
            alive = queries.get_live_meeting(session, self.meeting_id, self.generation) is not None
        self.checked = time.monotonic()
        return alive

    def check(self) -> None:
        if time.monotonic() - self.checked >= self.deps.alive_check_s and not self.now():
            raise _Gone


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


def _silence_frames(rec: RecordingWriter, waiting: Waiting, seq: int) -> int:
    """A missing chunk is assumed as long as its predecessor (else its successor)."""
    before = rec.entry(seq - 1)
    if before is not None:
        return before.length // rec.format.block_align
    later = min(s for s in waiting.chunks if s > seq)
    return waiting.chunks[later][0] // rec.format.block_align


def _check_gap(deps: ConcatDeps, rec: RecordingWriter, waiting: Waiting, seq: int, frames: int) -> None:
    """The run of missing seqs from ``seq`` to the next present one is bridged only if its silence stays
    within ``max_gap_s``: a one-frame chunk far ahead of a long one is no way to make hours of silence."""
    following = min(s for s in waiting.chunks if s > seq)
    silence_s = (following - seq) * frames / rec.format.sample_rate
    if silence_s > deps.max_gap_s:
        run = f"seq {seq}" if following == seq + 1 else f"seqs {seq}-{following - 1}"
        raise _Refused(
            "gap_too_long",
            f"{run} never arrived; bridging them would add {silence_s:.0f} s of silence, more than "
            f"AUDIOFLOW_MAX_GAP_S ({deps.max_gap_s:g} s): the recording stops at seq {seq - 1}",
        )


def _check_length(deps: ConcatDeps, rec: RecordingWriter, seq: int, length: int, what: str) -> None:
    fmt = rec.format
    limit = int(deps.max_meeting_s * fmt.sample_rate) * fmt.block_align
    if rec.data_length + length > limit:
        raise _Refused(
            "meeting_too_long",
            f"{what} seq {seq} would take the recording to "
            f"{(rec.data_length + length) // fmt.block_align / fmt.sample_rate:.1f} s, past "
            f"AUDIOFLOW_MAX_MEETING_S ({deps.max_meeting_s:g} s): the recording stops at seq {seq - 1}",
        )


def advance(deps: ConcatDeps, meeting_id: str, generation: str | None = None) -> int:
    """Append everything that can be appended now; returns how many seqs were added. ``generation``
    (from a work entry) names which meeting of that id the work is for: none if it was deleted."""
    with deps.sessions() as session:
        meeting = queries.get_live_meeting(session, meeting_id, generation)
        if meeting is None:
            return 0
        generation = queries.generation(meeting)
        waiting = _waiting(session, meeting)
    if (not waiting.chunks and waiting.recorded_through < 0) or waiting.failed:
        return 0
    alive = _Alive(deps, meeting_id, generation)
    try:
        # The turn never creates the meeting's storage: if it is gone, so is the meeting.
        with deps.storage.recording_turn(meeting_id):
            if not alive.now():  # deleted while this worker waited for its turn
                return 0
            with deps.storage.open_for_append(meeting_id, waiting.fmt) as rec:
                added, announced = _advance_locked(deps, meeting_id, generation, waiting, rec, alive)
    except _Gone:
        return 0
    except FileNotFoundError:
        if alive.now():
            raise
        return 0  # deleted mid-step, files and all
    if announced:  # also a redelivery's event: it may be the one that held completed back
        announce_if_completed(deps.sessions, deps.publish, meeting_id, generation)
    return len(added)


def _advance_locked(
    deps: ConcatDeps, meeting_id: str, generation: str, waiting: Waiting, rec: RecordingWriter, alive: _Alive
) -> tuple[list[int], bool]:
    """The step itself, under the lock: the seqs appended, and whether it announced anything."""
    if rec.held_through < waiting.recorded_through:  # the file lost a tail the database recorded
        with deps.sessions() as session:
            meeting = queries.get_live_meeting(session, meeting_id, generation)
            if meeting is None:  # deleted meanwhile
                raise _Gone
            waiting = _waiting(session, meeting, after=rec.held_through)
    added: list[int] = []
    bridged: list[tuple[int, int]] = []
    failed = False
    try:
        while True:
            seq = rec.next_seq
            if seq in waiting.chunks:
                data = deps.storage.get_chunk(meeting_id, seq)
                pcm = pcm_view(data, parse_wav(data))
                _check_length(deps, rec, seq, len(pcm), "chunk")
                alive.check()
                rec.append(seq, pcm)
                RECORDING_APPENDED_BYTES.labels("chunk").inc(len(pcm))
                added.append(seq)
                continue
            later = [arrived for s, (_, arrived) in waiting.chunks.items() if s > seq]
            if later and deps.clock() - min(later) >= deps.gap_timeout_s:
                frames = _silence_frames(rec, waiting, seq)
                _check_gap(deps, rec, waiting, seq, frames)
                _check_length(deps, rec, seq, frames * rec.format.block_align, "bridging")
                alive.check()
                rec.append_silence(seq, frames)
                RECORDING_APPENDED_BYTES.labels("silence").inc(frames * rec.format.block_align)
                RECORDING_GAPS.inc()
                bridged.append((seq, frames))
                added.append(seq)
                continue
            break
    except RecordingFull as exc:
        _fail(deps, meeting_id, generation, "recording_full", str(exc))
        failed = True
    except _Refused as exc:
        _fail(deps, meeting_id, generation, exc.code, exc.reason)
        failed = True
    # Also when only the event is missing: a worker killed after mirroring, before announcing.
    told = deps.publish.announced(meeting_id, announcements.RECORDING)
    extended = added or rec.held_through != waiting.recorded_through or told != str(rec.held_through)
    if extended:
        _mirror(deps, meeting_id, generation, rec, bridged)
        for seq, frames in bridged:
            log.warning(
                "seq %d never arrived within %.0f s: bridged with %.2f s of silence",
                seq,
                deps.gap_timeout_s,
                frames / rec.format.sample_rate,
                extra={"meeting_id": meeting_id, "seq": seq, "generation": generation},
            )
        deps.publish.marked(
            meeting_id,
            "recording.extended",
            RecordingExtended(
                concatenated_through=rec.held_through,
                duration_s=round(rec.duration_s, 3),
                bytes=rec.file_length,
                appended=added,
                gaps=[seq for seq, _ in bridged],
            ),
            generation=generation,
            mark=announcements.RECORDING,
            value=str(rec.held_through),
            once=False,  # under the recording's lock: one announcer at a time
        )
    return added, failed or bool(extended)


@contextlib.contextmanager
def _recording_row(deps: ConcatDeps, meeting_id: str, generation: str) -> Iterator[tuple[Session, Recording]]:
    """The meeting's recording row (made if it has none) in a transaction that commits on leaving.
    Raises _Gone when that meeting (this generation) no longer exists, before or at the commit."""
    try:
        with transaction(deps.sessions) as session:
            if queries.get_live_meeting(session, meeting_id, generation) is None:
                raise _Gone
            row = queries.get_recording(session, meeting_id)
            if row is None:
                row = Recording(meeting_id=meeting_id)
                session.add(row)
            yield session, row
    except sqlalchemy.exc.IntegrityError:
        if _alive_now(deps, meeting_id, generation):
            raise
        raise _Gone from None  # deleted between the check and the commit


def _mirror(
    deps: ConcatDeps, meeting_id: str, generation: str, rec: RecordingWriter, bridged: list[tuple[int, int]]
) -> None:
    """Make the database say what the recording's index says (it is the authority)."""
    with _recording_row(deps, meeting_id, generation) as (session, row):
        row.concatenated_through = rec.held_through
        row.data_bytes = rec.data_length
        row.duration_s = rec.duration_s
        row.updated_at = datetime.now(UTC)
        for seq, frames in bridged:
            if session.get(Gap, (meeting_id, seq)) is None:
                session.add(Gap(meeting_id=meeting_id, seq=seq, frames=frames))


def _alive_now(deps: ConcatDeps, meeting_id: str, generation: str) -> bool:
    """Whether the meeting still exists (asked of the database now)."""
    return _Alive(deps, meeting_id, generation).now()


def _fail(deps: ConcatDeps, meeting_id: str, generation: str, code: str, reason: str) -> None:
    """The recording cannot go on: note why (the meeting's phase becomes ``failed``) and say so, once."""
    with _recording_row(deps, meeting_id, generation) as (_, row):
        row.failed_reason = reason
    deps.publish.marked(
        meeting_id,
        "chunk.failed",
        ChunkFailed(stage="concat", code=code, reason=reason),
        generation=generation,
        mark=announcements.RECORDING_FAILED,
        once=True,  # two workers that both hit the limit announce it once
    )
    log.error("recording failed: %s", reason, extra={"meeting_id": meeting_id, "generation": generation})


def handle(entry: Entry, deps: ConcatDeps) -> Outcome:
    work = Work.of(entry)
    advance(deps, work.meeting_id, work.generation)
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
