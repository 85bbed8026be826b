"""Queries. They join the caller's transaction (the caller commits) and raise typed errors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from sqlalchemy import (
    Float,
    Select,
    String,
    Subquery,
    bindparam,
    cast,
    delete,
    exists,
    func,
    select,
    union_all,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from audioflow.core.db.models import Chunk, DeletedMeeting, Gap, Meeting, Recording, Segment, WebhookDelivery
from audioflow.core.errors import Conflict, FormatMismatch, NotFound
from audioflow.core.meeting_model import AudioFormatModel, MeetingPublic
from audioflow.core.meeting_model import Phase as Phase  # one definition of the phases, on the wire
from audioflow.core.wav import AudioFormat


def meeting_format(meeting: Meeting) -> AudioFormat:
    return AudioFormat(sample_rate=meeting.sample_rate, channels=meeting.channels, bits=meeting.bits)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def generation(meeting: Meeting) -> str:
    """Which meeting of this id it is: its creation time in microseconds. A meeting deleted and one created
    later with the same id have different generations; work, events and files of the first are told apart
    by it (see ``events.publish``)."""
    return generation_at(meeting.created_at)


def generation_at(created: datetime) -> str:
    """:func:`generation` from a meeting's ``created_at``."""
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return str((created - _EPOCH) // timedelta(microseconds=1))


def get_live_meeting(session: Session, meeting_id: str, generation_: str | None) -> Meeting | None:
    """The meeting, if it exists and (when ``generation_`` is given) is still that generation."""
    meeting = session.get(Meeting, meeting_id)
    if meeting is None or (generation_ is not None and generation(meeting) != generation_):
        return None
    return meeting


def get_meeting(session: Session, meeting_id: str) -> Meeting:
    meeting = session.get(Meeting, meeting_id)
    if meeting is None:
        raise NotFound(f"meeting {meeting_id!r} does not exist", code="meeting_not_found")
    return meeting


def create_meeting(session: Session, meeting_id: str, fmt: AudioFormat) -> Meeting:
    if session.get(Meeting, meeting_id) is not None:
        raise Conflict(f"meeting {meeting_id!r} already exists", code="meeting_exists")
    meeting = Meeting(id=meeting_id, sample_rate=fmt.sample_rate, channels=fmt.channels, bits=fmt.bits)
    session.add(meeting)
    session.flush()
    return meeting


def check_format(meeting_id: str, expected: AudioFormat, fmt: AudioFormat) -> None:
    if fmt != expected:
        raise FormatMismatch(
            f"chunk format ({fmt.describe()}) differs from meeting {meeting_id!r} ({expected.describe()})"
        )


@dataclass(frozen=True)
class IngestView:
    """What accepting a chunk reads before its insert, in one statement (one round trip)."""

    format: AudioFormat | None  # None: no such meeting
    created_at: datetime | None
    deleted_at: datetime | None  # when a meeting of this id was last deleted, if it was
    highest_seq: int  # -1 if none
    seen: tuple[str, int, str] | None  # (meeting_id, seq, sha256) already delivered with this webhook-id


def _ingest_view_statement() -> Select[Any]:
    def one(column: Any, *where: Any) -> Any:
        return select(column).where(*where).scalar_subquery()

    meeting_id, webhook_id = bindparam("meeting_id", type_=String), bindparam("webhook_id", type_=String)
    meeting, delivery = Meeting.id == meeting_id, WebhookDelivery.id == webhook_id
    return select(
        one(Meeting.sample_rate, meeting),
        one(Meeting.channels, meeting),
        one(Meeting.bits, meeting),
        one(Meeting.created_at, meeting),
        one(DeletedMeeting.deleted_at, DeletedMeeting.meeting_id == meeting_id),
        one(func.max(Chunk.seq), Chunk.meeting_id == meeting_id),
        one(WebhookDelivery.meeting_id, delivery),
        one(WebhookDelivery.seq, delivery),
        one(WebhookDelivery.sha256, delivery),
    )


# Built once, with bound parameters, rather than nine subqueries' expressions and their cache key per
# request (visible in a py-spy profile; wrk side by side showed no throughput change beyond noise).
_INGEST_VIEW = _ingest_view_statement()


def ingest_view(session: Session, meeting_id: str, webhook_id: str | None) -> IngestView:
    rate, channels, bits, created, deleted, highest, seen_meeting, seen_seq, seen_sha = session.execute(
        _INGEST_VIEW, {"meeting_id": meeting_id, "webhook_id": webhook_id or ""}
    ).one()
    return IngestView(
        format=None if rate is None else AudioFormat(sample_rate=rate, channels=channels, bits=bits),
        created_at=created,
        deleted_at=deleted,
        highest_seq=-1 if highest is None else int(highest),
        seen=None if webhook_id is None or seen_meeting is None else (seen_meeting, seen_seq, seen_sha),
    )


AddResult = Literal["created", "duplicate"]


def insert_chunk(
    session: Session,
    meeting_id: str,
    seq: int,
    *,
    sha256: str,
    size_bytes: int,
    data_bytes: int,
    duration_s: float,
) -> AddResult:
    """Record an accepted chunk in one statement that tells new from held (``ON CONFLICT DO NOTHING``,
    which waits for a concurrent insert of the key to commit or roll back); the same bytes again is a
    duplicate, other bytes a conflict."""
    dialect_insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    inserted = session.execute(
        dialect_insert(Chunk)
        .values(
            meeting_id=meeting_id,
            seq=seq,
            sha256=sha256,
            size_bytes=size_bytes,
            data_bytes=data_bytes,
            duration_s=duration_s,
        )
        .on_conflict_do_nothing(index_elements=[Chunk.meeting_id, Chunk.seq])
        .returning(Chunk.seq)
    ).first()
    if inserted is not None:
        return "created"
    held = session.scalar(select(Chunk.sha256).where(Chunk.meeting_id == meeting_id, Chunk.seq == seq))
    if held == sha256:
        return "duplicate"
    raise Conflict(
        f"seq {seq} of meeting {meeting_id!r} was already received with different bytes",
        code="chunk_conflict",
    )


def record_delivery(session: Session, webhook_id: str, meeting_id: str, seq: int, sha256: str) -> None:
    session.add(WebhookDelivery(id=webhook_id, meeting_id=meeting_id, seq=seq, sha256=sha256))


def mark_deleted(session: Session, meeting_id: str, at: datetime) -> None:
    """Remember that ``meeting_id`` was deleted at ``at`` (see :class:`DeletedMeeting`)."""
    tombstone = session.get(DeletedMeeting, meeting_id)
    if tombstone is None:
        session.add(DeletedMeeting(meeting_id=meeting_id, deleted_at=at))
    else:
        tombstone.deleted_at = at


def deleted_at(session: Session, meeting_id: str) -> datetime | None:
    """When ``meeting_id`` was last deleted (within the pruning horizon), if it was."""
    tombstone = session.get(DeletedMeeting, meeting_id)
    return None if tombstone is None else tombstone.deleted_at


def prune_replay_records(session: Session, older_than: datetime) -> int:
    """Forget deliveries and deletions from before ``older_than``: a delivery signed that long ago is
    refused by its timestamp anyway. Returns how many rows went."""
    removed = 0
    for model, column in (
        (WebhookDelivery, WebhookDelivery.received_at),
        (DeletedMeeting, DeletedMeeting.deleted_at),
    ):
        result = session.execute(delete(model).where(column < older_than))
        removed += int(getattr(result, "rowcount", 0) or 0)
    return removed


def last_seq(session: Session, meeting_id: str) -> int:
    """The highest stored chunk's seq, -1 when there is none."""
    highest = session.scalar(select(func.max(Chunk.seq)).where(Chunk.meeting_id == meeting_id))
    return -1 if highest is None else int(highest)


def get_chunk(session: Session, meeting_id: str, seq: int) -> Chunk | None:
    return session.get(Chunk, (meeting_id, seq))


def get_segment(session: Session, meeting_id: str, seq: int) -> Segment | None:
    return session.get(Segment, (meeting_id, seq))


def get_recording(session: Session, meeting_id: str) -> Recording | None:
    return session.get(Recording, meeting_id)


def chunks(session: Session, meeting_id: str) -> Sequence[Chunk]:
    return session.scalars(select(Chunk).where(Chunk.meeting_id == meeting_id).order_by(Chunk.seq)).all()


def segments(session: Session, meeting_id: str) -> Sequence[Segment]:
    return session.scalars(
        select(Segment).where(Segment.meeting_id == meeting_id).order_by(Segment.seq)
    ).all()


def segment_outcomes(session: Session, meeting_id: str) -> list[tuple[int, bool]]:
    """Each stored segment's seq, and whether it is a failure."""
    rows = session.execute(
        select(Segment.seq, Segment.error.is_not(None)).where(Segment.meeting_id == meeting_id)
    ).all()
    return [(int(seq), bool(is_failed)) for seq, is_failed in rows]


def gaps(session: Session, meeting_id: str) -> Sequence[Gap]:
    return session.scalars(select(Gap).where(Gap.meeting_id == meeting_id).order_by(Gap.seq)).all()


class OnTimeline(Protocol):
    """What placing seqs on a meeting's timeline needs of it: a ``Meeting``, or what a worker kept of
    one it loaded."""

    @property
    def id(self) -> str: ...

    @property
    def sample_rate(self) -> int: ...


# The one definition of where a chunk starts on a meeting's timeline, for every Python caller: after all
# the audio of every earlier seq, chunks and bridged gaps alike. The page mirrors it (chunkStarts in
# frontend/src/state.ts); the cases in frontend/src/timeline.cases.json pin both to the same answers
# (tests/unit/core/test_timeline.py here, state.test.ts there).


def _lengths(meeting: OnTimeline) -> Subquery:
    """``(seq, seconds)`` of each seq on the timeline: a received chunk's duration, else the silence
    that bridged it. A seq neither received nor bridged adds nothing until it arrives, so later starts
    are provisional until then."""
    received = select(Chunk.seq.label("seq"), Chunk.duration_s.label("seconds")).where(
        Chunk.meeting_id == meeting.id
    )
    bridged = select(Gap.seq, cast(Gap.frames, Float) / meeting.sample_rate).where(
        Gap.meeting_id == meeting.id,
        ~exists().where(Chunk.meeting_id == Gap.meeting_id, Chunk.seq == Gap.seq),
    )
    return union_all(received, bridged).subquery()


def meeting_timeline(session: Session, meeting: OnTimeline) -> dict[int, float]:
    """Start (s) of every received or bridged seq of the meeting."""
    lengths = _lengths(meeting)
    earlier = func.sum(lengths.c.seconds).over(order_by=lengths.c.seq, rows=(None, -1))
    rows = session.execute(select(lengths.c.seq, func.coalesce(earlier, 0.0)))
    return {int(seq): float(start) for seq, start in rows}


def chunk_start(session: Session, meeting: OnTimeline, seq: int) -> float:
    """Start (s) of one seq, as :func:`meeting_timeline` has it, from one aggregate in the database
    rather than every row of the meeting brought back: what a worker needs after each chunk."""
    lengths = _lengths(meeting)
    total = session.scalar(select(func.coalesce(func.sum(lengths.c.seconds), 0.0)).where(lengths.c.seq < seq))
    return float(total or 0.0)


def derive_phase(
    *, ended: bool, received: int, settled: int, concatenated_through: int, highest_seq: int, failed: bool
) -> Phase:
    """Phase from rows: nothing is stored twice. ``settled`` counts chunks transcribed or failed."""
    if failed:
        return "failed"
    if not ended:
        return "live" if received else "pending"
    if settled >= received and concatenated_through >= highest_seq:
        return "completed"
    return "finalizing"


def meeting_status(session: Session, meeting_id: str) -> MeetingPublic:
    """The meeting as the reader API shows it, derived from its rows."""
    meeting = get_meeting(session, meeting_id)
    received, highest, last_received = session.execute(
        select(func.count(), func.coalesce(func.max(Chunk.seq), -1), func.max(Chunk.received_at)).where(
            Chunk.meeting_id == meeting_id
        )
    ).one()
    transcribed, failed = session.execute(
        select(
            func.count(Segment.seq).filter(Segment.error.is_(None)),
            func.count(Segment.seq).filter(Segment.error.is_not(None)),
        ).where(Segment.meeting_id == meeting_id)
    ).one()
    # The last chunk of an ended meeting settles only once it holds its tail (see Segment.tail_kept).
    tail_pending = meeting.ended_at is not None and bool(
        session.scalar(
            select(func.count()).where(
                Segment.meeting_id == meeting_id,
                Segment.seq == highest,
                Segment.error.is_(None),
                Segment.tail_kept.is_(False),
            )
        )
    )
    recording = get_recording(session, meeting_id)
    through = recording.concatenated_through if recording else -1
    gap_seqs = tuple(gap.seq for gap in gaps(session, meeting_id))
    in_recording = session.scalar(
        select(func.count()).where(
            Chunk.meeting_id == meeting_id, Chunk.seq <= through, Chunk.seq.not_in(gap_seqs)
        )
    )
    updated = max(
        (t for t in (meeting.created_at, last_received, recording.updated_at if recording else None) if t),
        default=None,
    )
    return MeetingPublic(
        id=meeting.id,
        phase=derive_phase(
            ended=meeting.ended_at is not None,
            received=received,
            settled=transcribed + failed - tail_pending,
            concatenated_through=through,
            highest_seq=highest,
            failed=bool(recording and recording.failed_reason),
        ),
        format=AudioFormatModel.model_validate(meeting_format(meeting), from_attributes=True),
        chunks_received=received,
        chunks_transcribed=transcribed,
        chunks_failed=failed,
        chunks_concatenated=in_recording or 0,
        concatenated_through=through,
        highest_seq=highest,
        gaps=list(gap_seqs),
        recording_duration_s=recording.duration_s if recording else 0.0,
        recording_bytes=recording.data_bytes if recording else 0,
        failed_reason=recording.failed_reason if recording else None,
        created_at=meeting.created_at,
        ended_at=meeting.ended_at,
        updated_at=updated,
    )


def meeting_ids(session: Session, *, limit: int, offset: int) -> Sequence[str]:
    return session.scalars(
        select(Meeting.id).order_by(Meeting.created_at.desc(), Meeting.id).limit(limit).offset(offset)
    ).all()
