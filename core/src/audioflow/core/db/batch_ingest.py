"""Many chunks' rows in one transaction: the gateway's group commit (``api/group_commit.py``).

Three statements serve a whole batch, whatever its size: one read of what its meetings and webhook-ids
already hold, one multi-row insert of the chunks that tells new from held (``ON CONFLICT DO NOTHING
RETURNING``), one insert of the deliveries. They run on the session's connection as Core statements,
without the ORM's unit of work, because a batch is only ever inserted, never read back as objects.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from audioflow.core.db.models import Chunk, DeletedMeeting, Meeting, WebhookDelivery, utcnow
from audioflow.core.wav import AudioFormat

_MEETINGS, _CHUNKS, _DELETED, _DELIVERIES = (
    Meeting.__table__,
    Chunk.__table__,
    DeletedMeeting.__table__,
    WebhookDelivery.__table__,
)


@dataclass(frozen=True)
class HeldMeeting:
    """What a batch needs to know of a meeting that exists."""

    format: AudioFormat
    created_at: datetime
    deleted_at: datetime | None  # when a meeting of this id was last deleted, if it was
    highest_seq: int  # -1 if it has no chunk yet


@dataclass(frozen=True)
class NewChunk:
    meeting_id: str
    seq: int
    sha256: str
    size_bytes: int
    data_bytes: int
    duration_s: float
    webhook_id: str | None


def held_meetings(session: Session, meeting_ids: Iterable[str]) -> dict[str, HeldMeeting]:
    """The batch's meetings that exist, by id (one round trip)."""
    ids = sorted(set(meeting_ids))
    highest = (
        select(_CHUNKS.c.meeting_id, func.max(_CHUNKS.c.seq).label("highest"))
        .where(_CHUNKS.c.meeting_id.in_(ids))
        .group_by(_CHUNKS.c.meeting_id)
        .subquery()
    )
    m, deleted = _MEETINGS.c, _DELETED.c
    rows = session.connection().execute(
        select(m.id, m.sample_rate, m.channels, m.bits, m.created_at, deleted.deleted_at, highest.c.highest)
        .outerjoin(_DELETED, deleted.meeting_id == m.id)
        .outerjoin(highest, highest.c.meeting_id == m.id)
        .where(m.id.in_(ids))
    )
    return {
        row.id: HeldMeeting(
            format=AudioFormat(sample_rate=row.sample_rate, channels=row.channels, bits=row.bits),
            created_at=row.created_at,
            deleted_at=row.deleted_at,
            highest_seq=-1 if row.highest is None else int(row.highest),
        )
        for row in rows
    }


def seen_webhook_ids(session: Session, webhook_ids: Iterable[str]) -> set[str]:
    """Which of these webhook-ids a delivery already used (one round trip)."""
    ids = sorted(set(webhook_ids))
    if not ids:
        return set()
    found = session.connection().execute(select(_DELIVERIES.c.id).where(_DELIVERIES.c.id.in_(ids)))
    return {row.id for row in found}


def insert_new_chunks(session: Session, chunks: Sequence[NewChunk]) -> set[tuple[str, int]]:
    """Insert the chunks whose key is free, in one statement; returns the keys inserted. A key already
    held (or taken meanwhile: the insert waits for a concurrent one to commit) is left out, for the
    caller to tell duplicate from conflict the one-by-one way."""
    if not chunks:
        return set()
    now = utcnow()
    rows = [
        {
            "meeting_id": c.meeting_id,
            "seq": c.seq,
            "sha256": c.sha256,
            "size_bytes": c.size_bytes,
            "data_bytes": c.data_bytes,
            "duration_s": c.duration_s,
            "received_at": now,
        }
        for c in chunks
    ]
    # One statement with the rows as its parameter list: SQLAlchemy sends them as multi-row VALUES
    # ("insertmanyvalues"), and the statement is compiled once, not once per batch size.
    statement = _INSERT_NEW_CHUNKS[session.get_bind().dialect.name == "postgresql"]
    return {(row.meeting_id, row.seq) for row in session.connection().execute(statement, rows)}


def _insert_new_chunks(dialect_insert: Any) -> Any:
    return (
        dialect_insert(_CHUNKS)
        .on_conflict_do_nothing(index_elements=[_CHUNKS.c.meeting_id, _CHUNKS.c.seq])
        .returning(_CHUNKS.c.meeting_id, _CHUNKS.c.seq)
    )


_INSERT_NEW_CHUNKS = {True: _insert_new_chunks(postgresql.insert), False: _insert_new_chunks(sqlite.insert)}


def record_deliveries(session: Session, chunks: Sequence[NewChunk]) -> None:
    """Remember the webhook-ids of these chunks' deliveries (one statement)."""
    now = utcnow()
    rows = [
        {"id": c.webhook_id, "meeting_id": c.meeting_id, "seq": c.seq, "sha256": c.sha256, "received_at": now}
        for c in chunks
        if c.webhook_id is not None
    ]
    if rows:
        session.connection().execute(_INSERT_DELIVERIES, rows)


_INSERT_DELIVERIES = insert(WebhookDelivery)
