"""Group commit (``api/group_commit.py``) on a real database (PostgreSQL and SQLite), a real Redis and
real files: later chunks of a meeting share one transaction and one pipeline; everything unusual is
left to the one-by-one path, which then answers exactly as before; a batch that fails commits nothing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
import redis
import redis.asyncio as aioredis
from sqlalchemy import delete, func, select

from audioflow.api import group_commit
from audioflow.api.acceptance import Accepted, accept_chunk, check_body
from audioflow.api.context import AppContext
from audioflow.api.group_commit import GroupCommit, Pending, commit_batch
from audioflow.core.db import batch_ingest, queries
from audioflow.core.db.engine import make_engine, make_sessionmaker
from audioflow.core.db.migrate import upgrade
from audioflow.core.db.models import Chunk, Meeting, Recording, Segment, WebhookDelivery
from audioflow.core.errors import Conflict, NotFound, SeqTooFarAhead, StorageFull
from audioflow.core.keys import Keys
from audioflow.core.settings import Settings
from audioflow.core.signing import PresentedSignature
from audioflow.core.storage import LocalStorage
from audioflow.core.wav import AudioFormat
from tests import services
from tests.factories import tone_pcm, wav_bytes

CHUNK = wav_bytes(tone_pcm(0.25))
OTHER = wav_bytes(tone_pcm(0.25, freq=660.0))


@contextlib.contextmanager
def _context(
    database_url: str, redis_server_url: str, redis_prefix: str, data: Path, **pool: int
) -> Iterator[AppContext]:
    """A gateway's context on a migrated database, real Redis and real files; ``pool``: the engine's."""
    upgrade(database_url)
    engine = make_engine(database_url, fsync=False, **pool)
    context = AppContext(
        settings=Settings(max_seq_ahead=1000),
        engine=engine,
        sessions=make_sessionmaker(engine),
        redis=redis.Redis.from_url(redis_server_url, decode_responses=True),
        aredis=aioredis.Redis.from_url(redis_server_url, decode_responses=True),
        storage=LocalStorage(data, fsync=False),
        keys=Keys(redis_prefix),
    )
    try:
        yield context
    finally:
        context.redis.close()
        engine.dispose()


@pytest.fixture
def ctx(database_url: str, redis_server_url: str, redis_prefix: str, tmp_path: Path) -> Iterator[AppContext]:
    with _context(database_url, redis_server_url, redis_prefix, tmp_path / "data") as context:
        yield context


def _signed(webhook_id: str) -> PresentedSignature:
    return PresentedSignature(webhook_id=webhook_id, timestamp=int(time.time()), signatures="v1,unused")


def _pending(ctx: AppContext, meeting_id: str, seq: int, webhook_id: str, body: bytes = CHUNK) -> Pending:
    return Pending(meeting_id, seq, body, check_body(ctx.settings, body), _signed(webhook_id))


def _rows(ctx: AppContext) -> tuple[set[tuple[str, int]], set[str]]:
    with ctx.sessions() as session:
        chunks = {(m, s) for m, s in session.execute(select(Chunk.meeting_id, Chunk.seq))}
        deliveries = set(session.scalars(select(WebhookDelivery.id)))
    return chunks, deliveries


def _received_events(ctx: AppContext, meeting_id: str) -> list[int]:
    entries = cast(list[tuple[str, dict[str, str]]], ctx.redis.xrange(ctx.keys.events(meeting_id)))
    return [json.loads(fields["data"])["seq"] for _, fields in entries if fields["type"] == "chunk.received"]


def test_later_chunks_share_one_commit_and_everything_unusual_is_left_to_the_one_by_one_path(
    ctx: AppContext,
) -> None:
    first = accept_chunk(ctx, "m", 0, CHUNK, _signed("w-first"))  # the meeting's first chunk, one by one
    assert first.status == "created" and first.first_chunk
    batch = [
        _pending(ctx, "m", 1, "w-1"),  # 0: new seq of a meeting with chunks
        _pending(ctx, "m", 2, "w-2"),  # 1: another
        _pending(ctx, "m", 2, "w-2b"),  # 2: the same seq again in this batch
        _pending(ctx, "m", 3, "w-twice"),  # 3: a webhook-id used twice in this batch
        _pending(ctx, "m", 4, "w-twice"),  # 4
        _pending(ctx, "m", 5, "w-first"),  # 5: a webhook-id already delivered
        _pending(ctx, "m", 0, "w-0b"),  # 6: a seq already held
        _pending(ctx, "m", 0, "w-0c", OTHER),  # 7: a seq already held, other bytes
        _pending(ctx, "new", 0, "w-new"),  # 8: a meeting's first chunk (it creates the meeting)
        _pending(ctx, "m", 5000, "w-far"),  # 9: too far ahead
    ]
    results = commit_batch(ctx, batch)

    grouped = {i for i, r in enumerate(results) if r is not None}
    assert grouped == {0, 1, 8}
    assert all(isinstance(r, Accepted) and r.status == "created" and r.needs_work for r in results if r)
    assert [r.first_chunk for r in results if r] == [False, False, True]
    assert all(r.generation == first.generation for r in results[:2] if r)
    chunks, deliveries = _rows(ctx)
    assert chunks == {("m", 0), ("m", 1), ("m", 2), ("new", 0)}
    assert deliveries == {"w-first", "w-1", "w-2", "w-new"}
    assert ctx.storage.get_chunk("m", 1) == CHUNK and ctx.storage.get_chunk("m", 2) == CHUNK
    assert ctx.redis.xlen(ctx.keys.transcribe) == ctx.redis.xlen(ctx.keys.concat) == 4
    assert _received_events(ctx, "m") == [0, 1, 2]

    # The chunks left over get the answers the one-by-one path always gave.
    def one_by_one(i: int) -> Accepted:
        p = batch[i]
        return accept_chunk(ctx, p.meeting_id, p.seq, p.body, p.signature, p.checked)

    assert one_by_one(2).status == "duplicate"
    assert one_by_one(3).status == "created"
    with pytest.raises(Conflict, match="webhook-id"):
        one_by_one(4)
    with pytest.raises(Conflict, match="webhook-id"):
        one_by_one(5)
    assert one_by_one(6).status == "duplicate"
    with pytest.raises(Conflict, match="different bytes"):
        one_by_one(7)
    assert one_by_one(8).status == "duplicate"


def _phases(ctx: AppContext, meeting_id: str) -> list[str]:
    entries = cast(list[tuple[str, dict[str, str]]], ctx.redis.xrange(ctx.keys.events(meeting_id)))
    return [json.loads(f["data"])["phase"] for _, f in entries if f["type"] == "meeting.phase"]


def test_meetings_starting_together_are_created_in_the_batch_and_go_live(ctx: AppContext) -> None:
    """Many meetings start at once (the top of an hour): each one's first chunk creates it in the batch,
    as the one-by-one path would, and announces it live. A meeting deleted once, a second chunk of a
    meeting the batch creates, and a first chunk too far ahead are still decided one by one."""
    accept_chunk(ctx, "gone", 0, CHUNK, _signed("w-gone-0"))
    with ctx.sessions() as session, session.begin():
        queries.mark_deleted(session, "gone", datetime.now(UTC) - timedelta(hours=1))
        session.execute(delete(Meeting).where(Meeting.id == "gone"))
    stereo = wav_bytes(tone_pcm(0.25) * 2, AudioFormat(16000, 2, 16))
    batch = [
        _pending(ctx, "a", 0, "w-a0"),  # 0: a new meeting's first chunk
        _pending(ctx, "b", 3, "w-b3", stereo),  # 1: another, starting at seq 3, in its own format
        _pending(ctx, "a", 1, "w-a1"),  # 2: the second chunk of a meeting this batch creates
        _pending(ctx, "gone", 0, "w-gone-again"),  # 3: a meeting deleted once: its replay check
        _pending(ctx, "far", 1000, "w-far"),  # 4: too far ahead for a meeting's first chunk
        _pending(ctx, "c", 0, "w-twice"),  # 5: a webhook-id used twice in this batch
        _pending(ctx, "d", 0, "w-twice"),  # 6
    ]
    results = commit_batch(ctx, batch)

    assert [r and (r.status, r.first_chunk) for r in results] == [
        ("created", True),
        ("created", True),
        None,
        None,
        None,
        None,
        None,
    ]
    with ctx.sessions() as session:
        for i, meeting_id in ((0, "a"), (1, "b")):
            meeting = queries.get_meeting(session, meeting_id)
            assert queries.meeting_format(meeting) == batch[i].checked.info.format
            assert results[i] == batch[i].answer(
                "created", queries.generation(meeting), needs_work=True, first_chunk=True
            )
    assert ctx.storage.get_chunk("b", 3) == stereo
    assert _phases(ctx, "a") == _phases(ctx, "b") == ["live"]
    assert _received_events(ctx, "a") == [0] and _received_events(ctx, "b") == [3]

    def one_by_one(i: int) -> Accepted:
        p = batch[i]
        return accept_chunk(ctx, p.meeting_id, p.seq, p.body, p.signature, p.checked)

    second = one_by_one(2)
    assert (second.status, second.first_chunk) == ("created", False)
    assert one_by_one(3).first_chunk  # signed after the deletion: not a replay
    with pytest.raises(SeqTooFarAhead):
        one_by_one(4)
    assert one_by_one(5).first_chunk
    with pytest.raises(Conflict, match="webhook-id"):
        one_by_one(6)


def test_with_auto_create_off_no_meeting_is_created_in_the_batch(ctx: AppContext) -> None:
    ctx.settings = ctx.settings.model_copy(update={"auto_create_meetings": False})
    assert commit_batch(ctx, [_pending(ctx, "a", 0, "w-a0")]) == [None]
    with pytest.raises(NotFound, match="auto-create is off"):
        accept_chunk(ctx, "a", 0, CHUNK, _signed("w-a0"))


def _work_done(ctx: AppContext, meeting_id: str, seq: int) -> None:
    """As the workers leave a chunk: transcribed, and the recording concatenated through it."""
    with ctx.sessions() as session, session.begin():
        session.add(
            Segment(meeting_id=meeting_id, seq=seq, engine="t", start_s=0, end_s=1, text="", decode_s=0)
        )
        session.merge(Recording(meeting_id=meeting_id, concatenated_through=seq))


def test_deliveries_sent_again_are_answered_in_the_batch_as_the_one_by_one_path_answers_them(
    ctx: AppContext,
) -> None:
    """A platform that missed its answers sends the same deliveries again (a burst of them after a
    timeout). Those are answered as duplicates in the batch, with their work enqueued again unless it is
    done; anything that is not exactly a delivery sent again is still left to the one-by-one path."""
    accept_chunk(ctx, "m", 0, CHUNK, _signed("w-0"))
    assert [r and r.status for r in commit_batch(ctx, [_pending(ctx, "m", s, f"w-{s}") for s in (1, 2)])] == [
        "created",
        "created",
    ]
    _work_done(ctx, "m", 1)
    unsigned = Pending("m", 2, CHUNK, check_body(ctx.settings, CHUNK), None)
    unsigned_other = Pending("m", 2, OTHER, check_body(ctx.settings, OTHER), None)
    rows_before, queued_before = _rows(ctx), ctx.redis.xlen(ctx.keys.transcribe)
    batch = [
        _pending(ctx, "m", 1, "w-1"),  # 0: sent again, its work done
        _pending(ctx, "m", 2, "w-2"),  # 1: sent again, its work not done
        _pending(ctx, "m", 2, "w-2"),  # 2: and again, in the same batch
        unsigned,  # 3: the same bytes again, not a webhook delivery
        _pending(ctx, "m", 0, "w-1"),  # 4: a webhook-id that delivered another seq
        _pending(ctx, "m", 1, "w-1", OTHER),  # 5: its webhook-id delivered other bytes
        unsigned_other,  # 6: other bytes under a held seq
        _pending(ctx, "m", 2, "w-2-new-id"),  # 7: the same bytes under a new webhook-id (recorded one by one)
    ]
    results = commit_batch(ctx, batch)

    assert [r and (r.status, r.needs_work) for r in results] == [
        ("duplicate", False),
        ("duplicate", True),
        ("duplicate", True),
        ("duplicate", True),
        None,
        None,
        None,
        None,
    ]
    assert _rows(ctx) == rows_before  # nothing recorded: no chunk, no delivery
    assert ctx.redis.xlen(ctx.keys.transcribe) == queued_before + 3  # the three whose work is not done
    assert _received_events(ctx, "m") == [0, 1, 2]  # a duplicate announces no chunk.received

    def one_by_one(i: int) -> Accepted:
        p = batch[i]
        return accept_chunk(ctx, p.meeting_id, p.seq, p.body, p.signature, p.checked)

    for i in range(4):
        assert results[i] == one_by_one(i), i
    for i in (4, 5):
        with pytest.raises(Conflict, match="webhook-id"):
            one_by_one(i)
    with pytest.raises(Conflict, match="different bytes"):
        one_by_one(6)
    assert one_by_one(7).status == "duplicate"


def test_a_batch_that_fails_commits_nothing_and_each_chunk_is_then_decided_alone(
    ctx: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    accept_chunk(ctx, "m", 0, CHUNK, _signed("w-0"))
    put_chunks = ctx.storage.put_chunks

    def full_at_seq_2(chunks: list[tuple[str, int, bytes | memoryview]]) -> None:
        """Test double: the disk fills up at seq 2."""
        if any(seq == 2 for _, seq, _ in chunks):
            raise StorageFull("the data folder is full")
        put_chunks(chunks)

    monkeypatch.setattr(ctx.storage, "put_chunks", full_at_seq_2)
    with pytest.raises(StorageFull):
        commit_batch(ctx, [_pending(ctx, "m", seq, f"w-{seq}") for seq in (1, 2, 3)])
    assert _rows(ctx) == ({("m", 0)}, {"w-0"})
    assert ctx.redis.xlen(ctx.keys.transcribe) == 1

    async def accept_all() -> list[Accepted | BaseException]:
        committer = GroupCommit(ctx)
        sends = [committer.accept("m", seq, CHUNK, _signed(f"w-{seq}")) for seq in (1, 2, 3)]
        return await asyncio.gather(*sends, return_exceptions=True)

    one, two, three = asyncio.run(accept_all())
    assert isinstance(one, Accepted) and isinstance(three, Accepted)
    assert isinstance(two, StorageFull)
    assert _rows(ctx)[0] == {("m", 0), ("m", 1), ("m", 3)}


def test_concurrent_requests_are_committed_in_one_batch(
    ctx: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    accept_chunk(ctx, "m", 0, CHUNK, _signed("w-0"))
    sizes: list[int] = []

    def counted(context: AppContext, batch: list[Pending]) -> list[Accepted | None]:
        sizes.append(len(batch))
        return commit_batch(context, batch)

    monkeypatch.setattr(group_commit, "commit_batch", counted)

    async def send() -> list[Accepted]:
        committer = GroupCommit(ctx)
        return await asyncio.gather(
            *(committer.accept("m", s, CHUNK, _signed(f"w-{s}")) for s in range(1, 21))
        )

    answers = asyncio.run(send())
    assert [a.status for a in answers] == ["created"] * 20
    assert sizes == [20]  # all twenty were waiting when the first flush started
    with ctx.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Chunk)) == 21
    assert ctx.redis.xlen(ctx.keys.transcribe) == 21


def test_concurrent_duplicates_as_many_as_the_pools_connections_are_answered(
    postgres_server_url: str,
    redis_server_url: str,
    redis_prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A duplicate's check of its unfinished work reads in the duplicate's own transaction. It used to
    take a second connection while holding the first: as many concurrent duplicates as the pool has
    connections then held them all, each waiting for one more, and the gateway answered nothing until
    the pool's timeout (a burst of retried deliveries stopped it). Here two duplicates meet, with a pool
    of two, where each holds its connection. PostgreSQL only: on SQLite one writer at a time is ever
    inside that transaction."""
    with (
        services.fresh_postgres_database(postgres_server_url) as database_url,
        _context(
            database_url,
            redis_server_url,
            redis_prefix,
            tmp_path / "data",
            pool_size=2,
            max_overflow=0,
            pool_timeout=5,
        ) as context,
    ):
        for seq in (0, 1):
            assert accept_chunk(context, "m", seq, CHUNK, None).status == "created"
        both_inside = threading.Barrier(2, timeout=10)
        real = batch_ingest.held_chunks

        def held_chunks_once_both_hold_a_connection(*args: Any, **kwargs: Any) -> Any:
            """Test double around the real read: it waits until both duplicates are inside theirs."""
            both_inside.wait()
            return real(*args, **kwargs)

        monkeypatch.setattr(batch_ingest, "held_chunks", held_chunks_once_both_hold_a_connection)
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda seq: accept_chunk(context, "m", seq, CHUNK, None), (0, 1)))
        assert [a.status for a in answers] == ["duplicate", "duplicate"]
