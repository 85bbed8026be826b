"""The reconciler (audioflow.workers.reconcile) on a real Redis and both databases: it enqueues again
exactly the untranscribed chunks whose entry is not in the stream, and a second pass adds nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import redis

from audioflow.core.db import queries
from audioflow.core.db.engine import make_engine, make_sessionmaker, transaction
from audioflow.core.db.migrate import upgrade
from audioflow.core.db.models import Chunk, Segment, WebhookDelivery
from audioflow.core.keys import Keys
from audioflow.core.wav import AudioFormat
from audioflow.workers.reconcile import prune, reconcile

FMT = AudioFormat(16000, 1, 16)


def test_only_lost_work_is_enqueued_again_and_only_once(
    database_url: str, redis_client: redis.Redis, redis_prefix: str
) -> None:
    upgrade(database_url)
    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    keys = Keys(redis_prefix)
    with transaction(sessions) as session:
        queries.create_meeting(session, "m", FMT)
        for seq in range(4):
            session.add(
                Chunk(meeting_id="m", seq=seq, sha256="0" * 64, size_bytes=0, data_bytes=0, duration_s=1)
            )
        session.add(Segment(meeting_id="m", seq=0, engine="x", start_s=0, end_s=1, text="", decode_s=0))
    with sessions() as session:
        generation = queries.generation(queries.get_meeting(session, "m"))
    redis_client.xadd(keys.transcribe, {"meeting_id": "m", "seq": 1, "generation": generation})  # queued
    later = datetime.now(UTC) + timedelta(minutes=1)
    # Seq 0 is transcribed, seq 1 still queued: only 2 and 3 were lost.
    assert reconcile(redis_client, keys, sessions, grace_s=30, now=lambda: later) == 2
    entries: Any = redis_client.xrange(keys.transcribe)
    assert sorted(int(fields["seq"]) for _, fields in entries) == [1, 2, 3]
    assert {fields["generation"] for _, fields in entries} == {generation}
    assert reconcile(redis_client, keys, sessions, grace_s=30, now=lambda: later) == 0
    # Chunks younger than the grace may still be on their way into the stream: left alone.
    redis_client.delete(keys.transcribe)
    assert reconcile(redis_client, keys, sessions, grace_s=30) == 0
    engine.dispose()


def test_an_ended_meetings_last_segment_without_its_tail_is_enqueued_again(
    database_url: str, redis_client: redis.Redis, redis_prefix: str
) -> None:
    """The last chunk was transcribed while the meeting was live (its tail left to a successor), and the
    end's re-enqueue was lost with Redis: the reconciler queues it again, and only it."""
    upgrade(database_url)
    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    keys = Keys(redis_prefix)
    with transaction(sessions) as session:
        for meeting_id in ("ended", "live"):
            meeting = queries.create_meeting(session, meeting_id, FMT)
            meeting.ended_at = datetime.now(UTC) if meeting_id == "ended" else None
            for seq in range(3):
                session.add(
                    Chunk(
                        meeting_id=meeting_id,
                        seq=seq,
                        sha256="0" * 64,
                        size_bytes=0,
                        data_bytes=0,
                        duration_s=1,
                    )
                )
                session.add(
                    Segment(
                        meeting_id=meeting_id, seq=seq, engine="x", start_s=0, end_s=1, text="", decode_s=0
                    )
                )
    later = datetime.now(UTC) + timedelta(minutes=1)
    assert reconcile(redis_client, keys, sessions, grace_s=30, now=lambda: later) == 1
    entries: Any = redis_client.xrange(keys.transcribe)
    assert [(fields["meeting_id"], fields["seq"]) for _, fields in entries] == [("ended", "2")]
    with transaction(sessions) as session:
        segment = queries.get_segment(session, "ended", 2)
        assert segment is not None
        segment.tail_kept = True
    redis_client.delete(keys.transcribe)
    assert reconcile(redis_client, keys, sessions, grace_s=30, now=lambda: later) == 0
    engine.dispose()


def test_replay_records_older_than_twice_the_tolerance_are_pruned(database_url: str) -> None:
    """webhook_deliveries and deleted_meetings used to grow forever; past twice the signature tolerance
    a delivery is refused by its timestamp, so they are forgotten then, and not before."""
    upgrade(database_url)
    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    now = datetime.now(UTC)
    with transaction(sessions) as session:
        for name, age in (("old", 601), ("young", 599)):
            session.add(
                WebhookDelivery(
                    id=name, meeting_id="m", seq=0, sha256="0" * 64, received_at=now - timedelta(seconds=age)
                )
            )
            queries.mark_deleted(session, name, now - timedelta(seconds=age))
    assert prune(sessions, tolerance_s=300) == 2
    with sessions() as session:
        assert [d.id for d in session.query(WebhookDelivery)] == ["young"]
        assert queries.deleted_at(session, "old") is None and queries.deleted_at(session, "young") is not None
    engine.dispose()
