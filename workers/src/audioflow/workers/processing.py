"""The processing worker's handler: speech-to-text for one chunk, idempotent on (meeting_id, seq).

It decodes the chunk with a short overlap of its predecessor's audio (when that has arrived) so that
words cut at the chunk edge are neither lost nor doubled; see ``stt.transcribe_chunk``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import sqlalchemy.exc
from sqlalchemy.orm import Session, sessionmaker

from audioflow.core import announcements
from audioflow.core.db import queries
from audioflow.core.db.engine import transaction
from audioflow.core.db.models import Meeting, Segment
from audioflow.core.errors import ChunkMissing
from audioflow.core.event_payloads import ChunkFailed, ChunkTranscribed
from audioflow.core.metrics import STT_AUDIO_SECONDS, STT_SECONDS
from audioflow.core.storage import ChunkStore
from audioflow.core.streams.consumer import Entry, Outcome
from audioflow.core.wav import parse_wav, pcm_view
from audioflow.workers.publisher import Publisher, announce_if_completed
from audioflow.workers.stt import SttEngine, transcribe_chunk
from audioflow.workers.work import Work

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Meeting:
    """What handling a chunk needs of its meeting, read once per chunk by ``handle`` and passed down.

    The writes below still check, inside their own transaction, that this meeting is alive: a guard
    against a delete that came since, not a reload."""

    id: str
    generation: str
    sample_rate: int  # places the chunk on the meeting's timeline (``queries.chunk_start``)

    @classmethod
    def of(cls, meeting: Meeting) -> _Meeting:
        return cls(meeting.id, queries.generation(meeting), meeting.sample_rate)


@dataclass
class ProcessingDeps:
    sessions: sessionmaker[Session]
    storage: ChunkStore  # the interface: any backend, not only local files
    engine: SttEngine
    publish: Publisher
    overlap_s: float


def _pcm(storage: ChunkStore, meeting_id: str, seq: int) -> bytes | None:
    if seq < 0 or not storage.has_chunk(meeting_id, seq):
        return None
    data = storage.get_chunk(meeting_id, seq)
    return bytes(pcm_view(data, parse_wav(data)))


def _previous_words(deps: ProcessingDeps, work: Work) -> tuple[str, ...]:
    """What the predecessor kept, when it is already transcribed (the usual case in a live meeting);
    empty otherwise, and the stitching then goes by word times alone."""
    if work.seq == 0 or deps.overlap_s <= 0:
        return ()
    with deps.sessions() as session:
        previous = queries.get_segment(session, work.meeting_id, work.seq - 1)
    if previous is None or previous.error is not None:
        return ()
    return tuple(str(word["text"]) for word in previous.words or ())


def _save(deps: ProcessingDeps, work: Work, meeting: _Meeting, segment: Segment) -> bool:
    """Insert the chunk's one segment; False if it already has one (a peer got there first) or the
    meeting is gone (deleted: nothing is written for it any more)."""
    segment.meeting_id, segment.seq, segment.engine, segment.start_s = (
        work.meeting_id,
        work.seq,
        deps.engine.name,
        0.0,
    )
    try:
        with transaction(deps.sessions) as session:
            if not _alive(session, meeting):
                return False
            session.add(segment)
    except sqlalchemy.exc.IntegrityError:
        return False
    return True


def _gone(work: Work) -> None:
    """Work for a meeting that was deleted: dropped. Logged without the meeting's id, so that the line is
    not forwarded to an event stream (of the deleted meeting, or of a new one with that id)."""
    log.info("dropping work for %s seq %d: the meeting was deleted", work.meeting_id, work.seq)


def _alive(session: Session, meeting: _Meeting) -> bool:
    """Whether that meeting is still there (not deleted, its id not reused since)."""
    return queries.get_live_meeting(session, meeting.id, meeting.generation) is not None


def _load(deps: ProcessingDeps, work: Work) -> _Meeting | None:
    with deps.sessions() as session:
        meeting = queries.get_live_meeting(session, work.meeting_id, work.generation)
        return None if meeting is None else _Meeting.of(meeting)


def handle(entry: Entry, deps: ProcessingDeps) -> Outcome:
    work = Work.of(entry)
    meeting = _settle(deps, work)
    if meeting is not None:  # after every announcement, also a redelivery's: it may be the one held back
        announce_if_completed(deps.sessions, deps.publish, meeting.id, meeting.generation)
    return Outcome.ACK


def _settle(deps: ProcessingDeps, work: Work) -> _Meeting | None:
    """Transcribe the chunk unless that is done, and announce its segment; its meeting, or None when
    that is gone."""
    with deps.sessions() as session:
        row = queries.get_live_meeting(session, work.meeting_id, work.generation)
        if row is None or queries.get_chunk(session, work.meeting_id, work.seq) is None:
            _gone(work)
            return None
        meeting = _Meeting.of(row)
        # The last chunk of an ended meeting keeps the words after its trailing cut: no successor comes.
        final = row.ended_at is not None and queries.last_seq(session, work.meeting_id) == work.seq
        existing = queries.get_segment(session, work.meeting_id, work.seq)
        fmt = queries.meeting_format(row)
    # Announced after the session is closed: announcing reads on a connection of its own.
    if existing is not None and (existing.tail_kept or existing.error is not None or not final):
        _announce_stored(deps, work, meeting, existing, final=final)  # a re-delivery or a duplicate
        return meeting
    # New, or transcribed before its meeting ended with it (ending enqueues it again): decode it.
    context = {"meeting_id": work.meeting_id, "seq": work.seq, "generation": meeting.generation}
    pcm = _pcm(deps.storage, work.meeting_id, work.seq)
    if pcm is None:
        if _load(deps, work) is None:  # deleted meanwhile, with its files
            _gone(work)
            return None
        raise ChunkMissing(f"chunk file of {work.meeting_id}/{work.seq} is missing from storage")
    previous = _pcm(deps.storage, work.meeting_id, work.seq - 1) if deps.overlap_s > 0 else None
    result = transcribe_chunk(
        deps.engine,
        pcm,
        fmt,
        previous,
        overlap_s=deps.overlap_s,
        previous_words=_previous_words(deps, work),
        final=final,
    )
    STT_SECONDS.labels(deps.engine.name).observe(result.decode_s)
    STT_AUDIO_SECONDS.labels(deps.engine.name).inc(result.audio_s)
    words = [asdict(word) for word in result.words]
    segment = Segment(
        end_s=result.audio_s,
        text=result.text,
        words=words,
        decode_s=result.decode_s,
        tail_kept=final or deps.overlap_s <= 0,
    )
    if existing is None and _save(deps, work, meeting, segment):
        _announce(deps, work, meeting, segment)
        log.info("transcribed in %.2f s: %r", result.decode_s, result.text[:80], extra=context)
    elif final and _keep_tail(deps, work, meeting, segment):
        # Its words now run to the end (a peer's or an earlier segment left them to a successor); the
        # page replaces the row.
        _announce(deps, work, meeting, segment, tail=True)
        log.info("last chunk transcribed with its tail: %r", result.text[-80:], extra=context)
    else:  # a peer transcribed it at the same moment (or the meeting was deleted)
        with deps.sessions() as session:
            stored = queries.get_segment(session, work.meeting_id, work.seq)
        if stored is not None:
            _announce_stored(deps, work, meeting, stored, final=final)
    return meeting


def _keep_tail(deps: ProcessingDeps, work: Work, meeting: _Meeting, segment: Segment) -> bool:
    """Replace a stored segment that left its tail to a successor with ``segment``, which holds it;
    False if there is none such (a peer did it first) or the meeting is gone."""
    with transaction(deps.sessions) as session:
        if not _alive(session, meeting):
            return False
        stored = session.get(Segment, (work.meeting_id, work.seq), with_for_update=True)
        if stored is None or stored.tail_kept:
            return False
        stored.text, stored.words, stored.end_s = segment.text, segment.words, segment.end_s
        stored.decode_s, stored.tail_kept = segment.decode_s, True
        return True


def _announce_stored(
    deps: ProcessingDeps, work: Work, meeting: _Meeting, stored: Segment, *, final: bool
) -> None:
    """Announce a segment found stored (its events may be out already): the last chunk's with its tail,
    also when a worker died between keeping the tail and announcing it."""
    _announce(deps, work, meeting, stored)
    if final and stored.tail_kept and stored.error is None:
        names = (announcements.transcribed(work.seq), announcements.transcribed_tail(work.seq))
        marks = {name: value for name in names if (value := deps.publish.announced(work.meeting_id, name))}
        if not announcements.tail_announced(marks, work.seq):
            _announce(deps, work, meeting, stored, tail=True)


def _announce(
    deps: ProcessingDeps, work: Work, meeting: _Meeting, segment: Segment, *, tail: bool = False
) -> None:
    """``chunk.transcribed`` for a stored segment, or ``chunk.failed`` for a failure, exactly once (and
    once more when the last chunk's tail is added; the page replaces the row): the mark and the event are
    written together, so a worker killed after its commit but before its event is made good by
    redelivery."""
    if segment.error is not None:
        deps.publish.marked(
            work.meeting_id,
            "chunk.failed",
            ChunkFailed(seq=work.seq, stage="transcribe", reason=segment.error),
            generation=meeting.generation,
            mark=announcements.failed(work.seq),
            once=True,  # a dead-lettering repeated after a crash announces once
        )
        return
    data = ChunkTranscribed(
        seq=work.seq,
        text=segment.text,
        words=segment.words,
        duration_s=segment.end_s,
        start_s=_chunk_start(deps, meeting, work.seq),
    )
    deps.publish.marked(
        work.meeting_id,
        "chunk.transcribed",
        data,
        generation=meeting.generation,
        mark=announcements.transcribed_tail(work.seq) if tail else announcements.transcribed(work.seq),
        value=announcements.WITH_TAIL if segment.tail_kept else "1",
        once=True,
    )


def _chunk_start(deps: ProcessingDeps, meeting: _Meeting, seq: int) -> float:
    with deps.sessions() as session:
        return round(queries.chunk_start(session, meeting, seq), 6)


def on_dead_letter(entry: Entry, reason: str, deps: ProcessingDeps) -> None:
    """A chunk that failed every attempt gets an error segment, so its meeting can still complete."""
    try:
        work = Work.of(entry)
    except Exception:
        log.error("malformed work entry %s dead-lettered: %s", entry.id, reason)
        return
    meeting = _load(deps, work)
    if meeting is None:
        _gone(work)
        return
    segment = Segment(end_s=0.0, text="", words=[], decode_s=0.0, error=reason[:500])
    if not _save(deps, work, meeting, segment):
        with deps.sessions() as session:
            stored = queries.get_segment(session, work.meeting_id, work.seq)
        if stored is None:
            _gone(work)
            return
        segment = stored  # a peer's, or this failure stored before a crash: announced as it is
    _announce(deps, work, meeting, segment)
    context = {"meeting_id": work.meeting_id, "seq": work.seq, "generation": meeting.generation}
    log.error("transcription failed for good: %s", reason, extra=context)
    announce_if_completed(deps.sessions, deps.publish, meeting.id, meeting.generation)
