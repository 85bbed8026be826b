"""Many chunks' rows in one transaction: the gateway's group commit (``api/group_commit.py``).

Four statements serve a whole batch, whatever its size: two reads of what its meetings and webhook-ids
already hold, one multi-row insert of the chunks that tells new from held (``ON CONFLICT DO NOTHING
RETURNING``), one insert of the deliveries. They run on a Core connection, without an ORM session
(whose unit of work a batch does not need: it is only ever inserted, never read back as objects).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ARRAY, Connection, String, any_, bindparam, func, select, text
from sqlalchemy.dialects import sqlite

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


def _is_postgresql(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def _member_of(column: Any, postgresql_dialect: bool) -> Any:
    """``column`` is one of the ``ids`` parameter's values. On PostgreSQL ``= ANY(array)``: one statement
    text whatever the batch's size, so psycopg converts it once (an expanded ``IN`` is a new text per
    size); SQLite has no arrays, so an expanding ``IN``."""
    if postgresql_dialect:
        return column == any_(bindparam("ids", type_=ARRAY(String)))
    return column.in_(bindparam("ids", expanding=True))


def _held_meetings_statement(postgresql_dialect: bool) -> Any:
    # The highest seq as a scalar subquery per meeting: each is one descent of the (meeting_id, seq)
    # index, whatever the meeting's length. A max() grouped over all the batch's meetings' chunks read
    # every chunk they hold instead: 9 ms per batch ten seconds into a 64-meeting run, growing with it.
    highest = (
        select(func.max(_CHUNKS.c.seq))
        .where(_CHUNKS.c.meeting_id == _MEETINGS.c.id)
        .scalar_subquery()
        .label("highest")
    )
    m, deleted = _MEETINGS.c, _DELETED.c
    return (
        select(m.id, m.sample_rate, m.channels, m.bits, m.created_at, deleted.deleted_at, highest)
        .outerjoin(_DELETED, deleted.meeting_id == m.id)
        .where(_member_of(m.id, postgresql_dialect))
    )


# Built once per dialect: a batch then only binds its ids.
_HELD_MEETINGS = {pg: _held_meetings_statement(pg) for pg in (True, False)}
_SEEN_WEBHOOK_IDS = {
    pg: select(_DELIVERIES.c.id).where(_member_of(_DELIVERIES.c.id, pg)) for pg in (True, False)
}


def held_meetings(conn: Connection, meeting_ids: Iterable[str]) -> dict[str, HeldMeeting]:
    """The batch's meetings that exist, by id (one round trip)."""
    statement = _HELD_MEETINGS[_is_postgresql(conn)]
    rows = conn.execute(statement, {"ids": sorted(set(meeting_ids))})
    return {
        row.id: HeldMeeting(
            format=AudioFormat(sample_rate=row.sample_rate, channels=row.channels, bits=row.bits),
            created_at=row.created_at,
            deleted_at=row.deleted_at,
            highest_seq=-1 if row.highest is None else int(row.highest),
        )
        for row in rows
    }


def seen_webhook_ids(conn: Connection, webhook_ids: Iterable[str]) -> set[str]:
    """Which of these webhook-ids a delivery already used (one round trip)."""
    ids = sorted(set(webhook_ids))
    if not ids:
        return set()
    found = conn.execute(_SEEN_WEBHOOK_IDS[_is_postgresql(conn)], {"ids": ids})
    return {row.id for row in found}


def insert_new_chunks(conn: Connection, chunks: Sequence[NewChunk]) -> set[tuple[str, int]]:
    """Insert the chunks whose key is free, in one statement; returns the keys inserted. A key already
    held (or taken meanwhile: the insert waits for a concurrent one to commit) is left out, for the
    caller to tell duplicate from conflict the one-by-one way."""
    if not chunks:
        return set()
    rows = [
        {
            "meeting_id": c.meeting_id,
            "seq": c.seq,
            "sha256": c.sha256,
            "size_bytes": c.size_bytes,
            "data_bytes": c.data_bytes,
            "duration_s": c.duration_s,
        }
        for c in chunks
    ]
    return {(row.meeting_id, row.seq) for row in _INSERT_CHUNKS.execute(conn, rows)}


def record_deliveries(conn: Connection, chunks: Sequence[NewChunk]) -> None:
    """Remember the webhook-ids of these chunks' deliveries (one statement)."""
    rows = [
        {"id": c.webhook_id, "meeting_id": c.meeting_id, "seq": c.seq, "sha256": c.sha256}
        for c in chunks
        if c.webhook_id is not None
    ]
    if rows:
        _INSERT_DELIVERIES.execute(conn, rows)


class _ManyRowInsert:
    """One INSERT of many rows that all get the same ``received_at``, in a statement whose text does not
    depend on how many rows there are.

    On PostgreSQL each column is one array parameter, unnested: psycopg then converts the statement's
    text once and keeps it, where a multi-row ``VALUES`` is a new text, parsed again, for every batch size
    (the unnest form halved the database work of a 32-chunk group commit: bench/RESULTS.md). SQLite has
    no arrays: there SQLAlchemy's multi-row ``VALUES`` ("insertmanyvalues") of the same insert."""

    def __init__(
        self,
        table: Any,
        types: dict[str, str],
        *,
        skip_taken: tuple[str, ...] = (),
        returning: tuple[str, ...] = (),
    ) -> None:
        """``types``: the PostgreSQL type of each column given; ``skip_taken``: the unique key whose
        rows already held are left out (``ON CONFLICT DO NOTHING``); ``returning``: columns of the
        rows inserted."""
        names = ", ".join(types)
        arrays = ", ".join(f"CAST(:{name} AS {sql_type}[])" for name, sql_type in types.items())
        self._postgresql = text(  # names and types from this module's constants, never from input
            f"INSERT INTO {table.name} ({names}, received_at) SELECT {names}, :received_at "  # noqa: S608
            f"FROM unnest({arrays}) AS batch({names})"
            + (f" ON CONFLICT ({', '.join(skip_taken)}) DO NOTHING" if skip_taken else "")
            + (f" RETURNING {', '.join(returning)}" if returning else "")
        )
        statement = sqlite.insert(table)
        if skip_taken:
            statement = statement.on_conflict_do_nothing(index_elements=[table.c[k] for k in skip_taken])
        self._sqlite = statement.returning(*(table.c[name] for name in returning)) if returning else statement
        self._names = tuple(types)

    def execute(self, conn: Connection, rows: list[dict[str, Any]]) -> Any:
        now = utcnow()
        if _is_postgresql(conn):
            columns: dict[str, Any] = {name: [row[name] for row in rows] for name in self._names}
            return conn.execute(self._postgresql, {**columns, "received_at": now})
        return conn.execute(self._sqlite, [{**row, "received_at": now} for row in rows])


_INSERT_CHUNKS = _ManyRowInsert(
    _CHUNKS,
    {
        "meeting_id": "text",
        "seq": "integer",
        "sha256": "text",
        "size_bytes": "integer",
        "data_bytes": "integer",
        "duration_s": "float8",
    },
    skip_taken=("meeting_id", "seq"),
    returning=("meeting_id", "seq"),
)
_INSERT_DELIVERIES = _ManyRowInsert(
    _DELIVERIES, {"id": "text", "meeting_id": "text", "seq": "integer", "sha256": "text"}
)
