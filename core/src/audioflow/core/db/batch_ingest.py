"""Many chunks' rows in one transaction: the gateway's group commit (``api/group_commit.py``).

Three statements serve a whole batch on PostgreSQL, whatever its size, in two round trips before the
``COMMIT``: two reads of what its meetings and webhook-ids already hold (pipelined), and one insert of
the chunks that tells new from held (``ON CONFLICT DO NOTHING RETURNING``) and records the new ones'
deliveries (SQLite: one insert per table). A batch holding deliveries sent again adds one read of
their chunks (:func:`held_chunks`); one holding meetings' first chunks, a read and an insert of those
meetings (:func:`insert_new_meetings`). They run on a Core connection, without an ORM session (whose unit
of work a batch does not need: it is only ever inserted, never read back as objects).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import namedtuple_row
from sqlalchemy import (
    ARRAY,
    Connection,
    Dialect,
    Select,
    String,
    and_,
    any_,
    bindparam,
    func,
    select,
    text,
    tuple_,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect

from audioflow.core.db.models import (
    Chunk,
    DeletedMeeting,
    Meeting,
    Recording,
    Segment,
    WebhookDelivery,
    utcnow,
)
from audioflow.core.wav import AudioFormat

_MEETINGS, _CHUNKS, _DELETED, _DELIVERIES, _SEGMENTS, _RECORDINGS = (
    Meeting.__table__,
    Chunk.__table__,
    DeletedMeeting.__table__,
    WebhookDelivery.__table__,
    Segment.__table__,
    Recording.__table__,
)

#: What a webhook delivery carried: its chunk's key (meeting id, seq) and the hash of its bytes.
Delivered = tuple[str, int, str]


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


def _psycopg(conn: Connection) -> psycopg.Connection[Any]:
    raw = conn.connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    return raw


def _rows(conn: Connection, statement: Select[Any], params: dict[str, Any] | None = None) -> list[Any]:
    """A read's rows. On PostgreSQL never prepared (psycopg ``prepare=False``): planned at each run, for
    its own values and the tables' sizes then. Prepared (psycopg does at a statement's fifth run),
    PostgreSQL may keep one generic plan for the connection's life, and for a lookup of many ids one
    made while a table is empty (a fresh system's first seconds) scans the table: the webhook-id lookup
    then read every delivery of a growing table until an ANALYZE, and halved the gateway's rate."""
    if not _is_postgresql(conn):
        return list(conn.execute(statement, params or {}))
    compiled = statement.compile(dialect=_PSYCOPG, compile_kwargs={"render_postcompile": True})
    cursor = _psycopg(conn).cursor(row_factory=namedtuple_row)
    return cursor.execute(str(compiled), compiled.construct_params(params), prepare=False).fetchall()


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
    pg: select(_DELIVERIES.c.id, _DELIVERIES.c.meeting_id, _DELIVERIES.c.seq, _DELIVERIES.c.sha256).where(
        _member_of(_DELIVERIES.c.id, pg)
    )
    for pg in (True, False)
}
_TOMBSTONES = {
    pg: select(_DELETED.c.meeting_id).where(_member_of(_DELETED.c.meeting_id, pg)) for pg in (True, False)
}
# The PostgreSQL texts as psycopg takes them, for its pipeline (below).
_PSYCOPG: Dialect = psycopg_dialect()  # type: ignore[no-untyped-call]  # SQLAlchemy's dialects are untyped
_PG_HELD_MEETINGS, _PG_SEEN_WEBHOOK_IDS = (
    str(statement.compile(dialect=_PSYCOPG)) for statement in (_HELD_MEETINGS[True], _SEEN_WEBHOOK_IDS[True])
)


@dataclass(frozen=True)
class Held:
    """What the database holds of a batch's meetings and webhook-ids."""

    meetings: dict[str, HeldMeeting]  # the batch's meetings that exist, by id
    seen_webhook_ids: dict[str, Delivered]  # the batch's webhook-ids a delivery already used, and what it was


def held(conn: Connection, meeting_ids: Iterable[str], webhook_ids: Iterable[str]) -> Held:
    """Both reads a batch starts with. On PostgreSQL they leave together with the transaction's
    ``BEGIN`` in psycopg's pipeline mode and come back together: one round trip where there were three.
    Each round trip also costs the group commit's thread a wait for the GIL that the busy event loop
    holds, so round trips cost more than the network's time under load."""
    meetings, webhooks = {"ids": sorted(set(meeting_ids))}, {"ids": sorted(set(webhook_ids))}
    if _is_postgresql(conn):
        raw = _psycopg(conn)
        # Both never prepared, as every read here (see _rows); their results are read once the pipeline
        # is synced, on leaving the block.
        with raw.pipeline():
            meeting_rows = raw.cursor(row_factory=namedtuple_row).execute(
                _PG_HELD_MEETINGS, meetings, prepare=False
            )
            seen_rows = (
                raw.cursor().execute(_PG_SEEN_WEBHOOK_IDS, webhooks, prepare=False)
                if webhooks["ids"]
                else None
            )
        rows: Iterable[Any] = meeting_rows.fetchall()
        seen: Iterable[Any] = [] if seen_rows is None else seen_rows.fetchall()
    else:
        rows = conn.execute(_HELD_MEETINGS[False], meetings)
        seen = conn.execute(_SEEN_WEBHOOK_IDS[False], webhooks) if webhooks["ids"] else []
    return Held(
        meetings={row.id: _held_meeting(row) for row in rows},
        seen_webhook_ids={row[0]: (row[1], row[2], row[3]) for row in seen},
    )


def _held_meeting(row: Any) -> HeldMeeting:
    return HeldMeeting(
        format=AudioFormat(sample_rate=row.sample_rate, channels=row.channels, bits=row.bits),
        created_at=row.created_at,
        deleted_at=row.deleted_at,
        highest_seq=-1 if row.highest is None else int(row.highest),
    )


@dataclass(frozen=True)
class HeldChunk:
    """A stored chunk, as a delivery sent again needs it: its hash, and whether its work is done."""

    sha256: str
    work_done: bool  # transcribed and concatenated: a duplicate of it needs no work enqueued again


def held_chunks(conn: Connection, keys: Iterable[tuple[str, int]]) -> dict[tuple[str, int], HeldChunk]:
    """The chunks held under these keys (meeting id, seq), in the caller's transaction; keys held by no
    chunk are left out. One statement; the rare path (deliveries sent again), so its text varies with the
    number of keys."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    c, s, r = _CHUNKS.c, _SEGMENTS.c, _RECORDINGS.c
    statement = (
        select(c.meeting_id, c.seq, c.sha256, s.seq.label("transcribed"), r.concatenated_through)
        .outerjoin(_SEGMENTS, and_(s.meeting_id == c.meeting_id, s.seq == c.seq))
        .outerjoin(_RECORDINGS, r.meeting_id == c.meeting_id)
        .where(tuple_(c.meeting_id, c.seq).in_(wanted))
    )
    return {
        (row.meeting_id, row.seq): HeldChunk(
            row.sha256,
            row.transcribed is not None
            and row.concatenated_through is not None
            and row.concatenated_through >= row.seq,
        )
        for row in _rows(conn, statement)
    }


def insert_new_meetings(conn: Connection, meetings: Sequence[tuple[str, AudioFormat]]) -> dict[str, datetime]:
    """Create the meetings whose id is free and was never deleted; returns those created, with their
    creation time. An id held (a concurrent creation committed first: the insert waits for it) or
    deleted once is left out, for the caller to decide one by one (a replay after a deletion is refused
    there). Two statements, the ids deleted once and the insert; the rare path (meetings starting), so
    the insert's text varies with their number."""
    if not meetings:
        return {}
    pg = _is_postgresql(conn)
    deleted_once = {row.meeting_id for row in _rows(conn, _TOMBSTONES[pg], {"ids": [i for i, _ in meetings]})}
    now = utcnow()
    rows = [  # in id order, as every batch inserts: two batches never wait on each other's ids crosswise
        {"id": i, "sample_rate": f.sample_rate, "channels": f.channels, "bits": f.bits, "created_at": now}
        for i, f in sorted(meetings)
        if i not in deleted_once
    ]
    if not rows:
        return {}
    insert = (postgresql.insert if pg else sqlite.insert)(Meeting).values(rows)
    created = conn.execute(
        insert.on_conflict_do_nothing(index_elements=[_MEETINGS.c.id]).returning(
            _MEETINGS.c.id, _MEETINGS.c.created_at
        )
    )
    return {row.id: row.created_at for row in created}


def insert_new_chunks(conn: Connection, chunks: Sequence[NewChunk]) -> set[tuple[str, int]]:
    """Insert the chunks whose key is free, and the webhook deliveries of those inserted; returns the
    keys inserted. A key already held (or taken meanwhile: the insert waits for a concurrent one to
    commit) is left out, with its delivery, for the caller to tell duplicate from conflict. On PostgreSQL
    one statement (one round trip); on SQLite one per table."""
    if not chunks:
        return set()
    now = utcnow()
    if _is_postgresql(conn):
        rows = json.dumps([{name: getattr(c, name) for name in _BATCH_COLUMNS} for c in chunks])
        return {(row.meeting_id, row.seq) for row in conn.execute(_PG_INSERT, {"rows": rows, "now": now})}
    found = conn.execute(
        _SQLITE_INSERT_CHUNKS,
        [{**{name: getattr(c, name) for name in _CHUNK_COLUMNS}, "received_at": now} for c in chunks],
    )
    inserted = {(row.meeting_id, row.seq) for row in found}
    deliveries = [
        {"id": c.webhook_id, "meeting_id": c.meeting_id, "seq": c.seq, "sha256": c.sha256, "received_at": now}
        for c in chunks
        if c.webhook_id is not None and (c.meeting_id, c.seq) in inserted
    ]
    if deliveries:
        conn.execute(_SQLITE_INSERT_DELIVERIES, deliveries)
    return inserted


# A batch's chunks as one JSON array of objects, read back by ``json_to_recordset``:
# one parameter, dumped by the json module's C encoder, where one array parameter per column made psycopg
# dump every value of every column in Python; and one statement text whatever the batch's size, which
# psycopg converts once and keeps (a multi-row VALUES is a new text, parsed again, per batch size).
_CHUNK_TYPES = {
    "meeting_id": "text",
    "seq": "integer",
    "sha256": "text",
    "size_bytes": "integer",
    "data_bytes": "integer",
    "duration_s": "float8",
}
_CHUNK_COLUMNS = tuple(_CHUNK_TYPES)
_BATCH_COLUMNS = (*_CHUNK_COLUMNS, "webhook_id")
_BATCH_RECORD = ", ".join(
    f"{name} {sql_type}" for name, sql_type in {**_CHUNK_TYPES, "webhook_id": "text"}.items()
)
# Names and types from this module's constants, never from input. The deliveries' insert joins the
# chunks' RETURNING, so a chunk left out (its key held) records no delivery. Keys are taken in key order,
# as meetings are in id order: two batches holding the same keys never wait on each other crosswise.
_PG_INSERT = text(
    f"WITH batch AS (SELECT * FROM json_to_recordset(CAST(:rows AS json)) AS b({_BATCH_RECORD})), "  # noqa: S608
    f"inserted AS (INSERT INTO {Chunk.__tablename__} ({', '.join(_CHUNK_COLUMNS)}, received_at) "
    f"SELECT {', '.join(_CHUNK_COLUMNS)}, :now FROM batch ORDER BY meeting_id, seq "
    f"ON CONFLICT (meeting_id, seq) DO NOTHING RETURNING meeting_id, seq), "
    f"delivered AS (INSERT INTO {WebhookDelivery.__tablename__} (id, meeting_id, seq, sha256, received_at) "
    f"SELECT batch.webhook_id, batch.meeting_id, batch.seq, batch.sha256, :now "
    f"FROM batch JOIN inserted USING (meeting_id, seq) WHERE batch.webhook_id IS NOT NULL) "
    f"SELECT meeting_id, seq FROM inserted"
)
_SQLITE_INSERT_CHUNKS = (
    sqlite.insert(Chunk)
    .on_conflict_do_nothing(index_elements=[_CHUNKS.c.meeting_id, _CHUNKS.c.seq])
    .returning(_CHUNKS.c.meeting_id, _CHUNKS.c.seq)
)
_SQLITE_INSERT_DELIVERIES = sqlite.insert(WebhookDelivery)
