"""A group commit's insert (``core/db/batch_ingest.py``) on real PostgreSQL and SQLite: the chunks whose
key is free are inserted and their deliveries recorded; a chunk whose key is held records nothing."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import Connection, Engine, delete, insert, select, text
from sqlalchemy.exc import OperationalError

from audioflow.core.db import batch_ingest
from audioflow.core.db.batch_ingest import NewChunk
from audioflow.core.db.engine import make_engine
from audioflow.core.db.migrate import upgrade
from audioflow.core.db.models import Chunk, DeletedMeeting, Meeting, Recording, Segment, WebhookDelivery
from audioflow.core.wav import AudioFormat
from tests import services
from tests.factories import SPEECH_FORMAT


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    upgrade(database_url)
    made = make_engine(database_url, fsync=False)
    with made.begin() as conn:
        conn.execute(insert(Meeting), [{"id": "m", "sample_rate": 16000, "channels": 1, "bits": 16}])
    yield made
    made.dispose()


def _chunk(seq: int, webhook_id: str | None, sha: str = "a") -> NewChunk:
    return NewChunk("m", seq, sha * 64, 32044, 32000, 1.0 + seq / 8, webhook_id)


def test_free_keys_are_inserted_with_their_deliveries_and_held_keys_record_nothing(engine: Engine) -> None:
    with engine.begin() as conn:
        assert batch_ingest.insert_new_chunks(conn, [_chunk(0, "w-0")]) == {("m", 0)}
    batch = [
        _chunk(0, "w-again", sha="b"),  # key held: left out, and its delivery too
        _chunk(1, "w-1"),
        _chunk(2, None),  # not a webhook delivery: no delivery row
        _chunk(3, 'w-3 "quoted" \\ é'),  # any header text survives the statement's encoding
    ]
    with engine.begin() as conn:
        assert batch_ingest.insert_new_chunks(conn, batch) == {("m", 1), ("m", 2), ("m", 3)}
        assert batch_ingest.insert_new_chunks(conn, []) == set()
    with engine.connect() as conn:
        chunks = {
            row.seq: (row.sha256, row.size_bytes, row.data_bytes, row.duration_s, row.received_at is not None)
            for row in conn.execute(select(Chunk.__table__))
        }
        deliveries = {
            (row.id, row.meeting_id, row.seq, row.sha256)
            for row in conn.execute(select(WebhookDelivery.__table__))
        }
    assert chunks == {seq: ("a" * 64, 32044, 32000, 1.0 + seq / 8, True) for seq in range(4)}
    assert deliveries == {
        ("w-0", "m", 0, "a" * 64),
        ("w-1", "m", 1, "a" * 64),
        ('w-3 "quoted" \\ é', "m", 3, "a" * 64),
    }


def test_the_reads_a_batch_starts_with_then_its_insert_in_the_same_transaction(engine: Engine) -> None:
    """On PostgreSQL both reads go out pipelined with the transaction's BEGIN: what they find is right,
    and the insert after them is part of one transaction (rolled back with it, committed with it)."""
    with engine.begin() as conn:
        conn.execute(insert(Meeting), [{"id": "gone", "sample_rate": 8000, "channels": 2, "bits": 8}])
        conn.execute(insert(DeletedMeeting), [{"meeting_id": "gone"}])
        batch_ingest.insert_new_chunks(conn, [_chunk(0, "w-0"), _chunk(4, None)])
    with engine.connect() as conn:
        assert batch_ingest.held(conn, ["nobody"], []) == batch_ingest.Held(meetings={}, seen_webhook_ids={})

    for outcome in ("rolled back", "committed"):
        with contextlib.suppress(_RolledBack), engine.begin() as conn:
            held = batch_ingest.held(conn, ["m", "gone", "nobody", "m"], ["w-0", "w-new"])
            assert set(held.meetings) == {"m", "gone"}
            m, gone = held.meetings["m"], held.meetings["gone"]
            assert (m.format.sample_rate, m.format.channels, m.format.bits) == (16000, 1, 16)
            assert m.highest_seq == 4 and m.deleted_at is None and m.created_at.tzinfo is not None
            assert (gone.format.sample_rate, gone.format.channels, gone.format.bits) == (8000, 2, 8)
            assert gone.highest_seq == -1 and gone.deleted_at is not None
            assert held.seen_webhook_ids == {"w-0": ("m", 0, "a" * 64)}  # what it delivered
            assert batch_ingest.insert_new_chunks(conn, [_chunk(5, "w-new")]) == {("m", 5)}
            if outcome == "rolled back":
                raise _RolledBack
        with engine.connect() as conn:
            seqs = set(conn.execute(select(Chunk.seq).where(Chunk.meeting_id == "m")).scalars())
        assert (5 in seqs) == (outcome == "committed"), outcome


def test_held_chunks_tell_their_bytes_and_whether_their_work_is_done(engine: Engine) -> None:
    """Work is done once the chunk is transcribed and the recording is concatenated through it."""
    with engine.begin() as conn:
        batch_ingest.insert_new_chunks(conn, [_chunk(seq, None, sha="ab"[seq % 2]) for seq in range(4)])
        segment = {"meeting_id": "m", "engine": "t", "start_s": 0, "end_s": 1, "text": "", "decode_s": 0}
        conn.execute(insert(Segment), [{**segment, "seq": seq} for seq in (0, 1, 3)])
        conn.execute(insert(Recording), [{"meeting_id": "m", "concatenated_through": 2}])
        held = batch_ingest.held_chunks(conn, [("m", 0), ("m", 1), ("m", 2), ("m", 3), ("m", 9), ("x", 0)])
    assert held == {
        ("m", 0): batch_ingest.HeldChunk("a" * 64, work_done=True),
        ("m", 1): batch_ingest.HeldChunk("b" * 64, work_done=True),
        ("m", 2): batch_ingest.HeldChunk("a" * 64, work_done=False),  # concatenated, not transcribed
        ("m", 3): batch_ingest.HeldChunk("b" * 64, work_done=False),  # transcribed, not concatenated yet
    }
    with engine.begin() as conn:
        assert batch_ingest.held_chunks(conn, []) == {}
        conn.execute(delete(Recording))
        assert not batch_ingest.held_chunks(conn, [("m", 0)])[("m", 0)].work_done  # no recording yet


def test_new_meetings_are_created_unless_their_id_is_held_or_was_deleted(engine: Engine) -> None:
    stereo = AudioFormat(8000, 2, 16)
    with engine.begin() as conn:
        conn.execute(insert(DeletedMeeting), [{"meeting_id": "deleted-once"}])
        created = batch_ingest.insert_new_meetings(
            conn,
            [
                ("m", SPEECH_FORMAT),
                ("new", stereo),
                ("deleted-once", SPEECH_FORMAT),
                ("also-new", SPEECH_FORMAT),
            ],
        )
        assert batch_ingest.insert_new_meetings(conn, []) == {}
    assert set(created) == {"new", "also-new"}  # "m" is held by the fixture
    assert all(at.tzinfo is not None for at in created.values())
    with engine.connect() as conn:
        rows = {
            r.id: (r.sample_rate, r.channels, r.bits, r.created_at)
            for r in conn.execute(select(Meeting.__table__))
        }
    assert rows["new"] == (8000, 2, 16, created["new"])
    assert "deleted-once" not in rows


def _new_meetings(conn: Connection, ids: list[str]) -> set[str]:
    return set(batch_ingest.insert_new_meetings(conn, [(i, SPEECH_FORMAT) for i in ids]))


def _new_chunks(conn: Connection, ids: list[str]) -> set[str]:
    """Chunks of meeting "m": "a" is seq 1, "b" seq 2."""
    inserted = batch_ingest.insert_new_chunks(conn, [_chunk(" ab".index(i), None) for i in ids])
    return {i for i in ids if ("m", " ab".index(i)) in inserted}


@pytest.mark.parametrize("insert_new", [_new_meetings, _new_chunks], ids=["meetings", "chunks"])
def test_batches_inserting_the_same_keys_wait_for_each_other_without_a_deadlock(
    postgres_server_url: str, insert_new: Callable[[Connection, list[str]], set[str]]
) -> None:
    """Two batches holding the same two new meetings (first chunks), or the same two new chunks, listed
    in opposite orders: each inserts in key order, so the second waits on the first key and never holds
    the other one."""
    with services.fresh_postgres_database(postgres_server_url) as url:
        upgrade(url)
        engine = make_engine(url, fsync=False)
        with engine.begin() as conn:
            conn.execute(insert(Meeting), [{"id": "m", "sample_rate": 16000, "channels": 1, "bits": 16}])

        def second_batch() -> set[str]:
            with engine.begin() as conn:
                return insert_new(conn, ["b", "a"])

        try:
            with ThreadPoolExecutor(1) as pool:
                with engine.begin() as first:
                    # The first batch's insert, caught between its two rows: it holds "a", not yet "b".
                    assert insert_new(first, ["a"]) == {"a"}
                    other = pool.submit(second_batch)
                    _wait_until_one_waits_on_a_lock(engine)
                    # Its second row: had the other batch taken "b" before waiting on "a", a deadlock.
                    assert insert_new(first, ["b"]) == {"b"}
                assert other.result(timeout=10) == set(), "both keys were the first batch's"
        finally:
            engine.dispose()


def _wait_until_one_waits_on_a_lock(engine: Engine) -> None:
    deadline = time.monotonic() + 10
    with engine.connect() as conn:
        while time.monotonic() < deadline:
            waiting = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
            if waiting:
                return
            conn.rollback()
            time.sleep(0.01)
    raise AssertionError("the second batch never waited on the first one's meeting")


class _RolledBack(Exception):
    """Raised inside ``engine.begin()`` to roll its transaction back."""


def test_a_connection_lost_under_the_pipeline_fails_one_batch_and_is_replaced(
    postgres_server_url: str,
) -> None:
    """The pipelined reads (PostgreSQL only) bypass SQLAlchemy's execute; a dropped connection must still
    leave the pool, so that only the batch that met it fails (its chunks then go the one-by-one way) and
    the next one reads."""
    with services.fresh_postgres_database(postgres_server_url) as url:
        upgrade(url)
        engine, admin = make_engine(url, fsync=False), make_engine(url, fsync=False)
        try:
            with engine.begin() as conn:
                conn.execute(insert(Meeting), [{"id": "m", "sample_rate": 16000, "channels": 1, "bits": 16}])
                batch_ingest.held(conn, ["m"], ["w"])
            with admin.begin() as other:  # as a PostgreSQL restart would: the pooled session ends
                ended = other.execute(
                    text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE pid <> pg_backend_pid() AND datname = current_database()"
                    )
                ).scalar_one()
            assert ended == 1, "the pooled connection was not there to end"
            with pytest.raises(OperationalError), engine.begin() as conn:
                batch_ingest.held(conn, ["m"], ["w"])
            with engine.begin() as conn:
                assert set(batch_ingest.held(conn, ["m"], ["w"]).meetings) == {"m"}
        finally:
            engine.dispose()
            admin.dispose()


_GROWING = ("webhook_deliveries", "chunks", "deleted_meetings")


def _lookups(conn: Connection) -> tuple[batch_ingest.Held, dict[tuple[str, int], batch_ingest.HeldChunk]]:
    """Every read a batch may make: what its meetings and webhook-ids hold, the chunks of deliveries sent
    again, and (with meetings' first chunks) the ids deleted once, before a creation that finds both held."""
    held = batch_ingest.held(conn, ["m", "other"], ["w-1", "w-2"])
    assert batch_ingest.insert_new_meetings(conn, [("m", SPEECH_FORMAT), ("gone-1", SPEECH_FORMAT)]) == {}
    return held, batch_ingest.held_chunks(conn, [("m", 1), ("m", 2)])


def _rows_read_one_by_one(conn: Connection) -> dict[str, int]:
    """This connection's count of rows read by sequential scans, per table, as PostgreSQL keeps it."""
    query = text("SELECT relname, seq_tup_read FROM pg_stat_xact_user_tables WHERE relname = ANY(:tables)")
    return {name: count for name, count in conn.execute(query, {"tables": list(_GROWING)})}


def test_the_batch_reads_look_up_their_keys_when_a_table_grew_after_they_were_first_run(
    postgres_server_url: str,
) -> None:
    """On a fresh database a prepared read could keep the plan made while its tables were empty, a
    sequential scan, as they grow (it did: every group commit read every webhook delivery). Run many times
    on empty tables, the reads must still look their keys up once the tables hold thousands of rows."""
    with services.fresh_postgres_database(postgres_server_url) as url:
        upgrade(url)
        engine = make_engine(url, fsync=False)
        try:
            with engine.begin() as conn:
                for table in _GROWING:
                    conn.execute(text(f"ALTER TABLE {table} SET (autovacuum_enabled = false)"))
                conn.execute(insert(Meeting), [{"id": "m", "sample_rate": 16000, "channels": 1, "bits": 16}])
                conn.execute(insert(DeletedMeeting), [{"meeting_id": "gone-1"}])
            # psycopg prepares a statement at its fifth run; then PostgreSQL may go generic.
            for _ in range(20):
                with engine.begin() as conn:
                    _lookups(conn)
            with engine.begin() as conn:
                batch_ingest.insert_new_chunks(conn, [_chunk(seq, f"w-{seq}") for seq in range(3000)])
                conn.execute(insert(DeletedMeeting), [{"meeting_id": f"gone-{i}"} for i in range(2, 3002)])
            with engine.begin() as conn:
                before = _rows_read_one_by_one(conn)  # a backend's counts also hold its last second's
                for _ in range(5):
                    held, chunks = _lookups(conn)
                after = _rows_read_one_by_one(conn)
        finally:
            engine.dispose()
    assert set(held.seen_webhook_ids) == {"w-1", "w-2"}
    assert set(chunks) == {("m", 1), ("m", 2)}
    assert after == before, "rows read one by one, per table"
