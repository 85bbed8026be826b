"""The reconciler (audioflow.workers.reconcile) on a real Redis and both databases: it enqueues again
exactly the untranscribed chunks whose entry is not in the stream, and a second pass adds nothing; a
finished meeting whose events Redis lost gets them made again, and then its phase."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import redis

from audioflow.core import announcements, events
from audioflow.core.db import queries
from audioflow.core.db.engine import make_engine, make_sessionmaker, transaction
from audioflow.core.db.migrate import upgrade
from audioflow.core.db.models import Chunk, Segment, WebhookDelivery
from audioflow.core.keys import Keys
from audioflow.core.wav import AudioFormat
from audioflow.workers.publisher import Publisher
from audioflow.workers.reconcile import announce_lost, prune, reconcile
from tests.rows import settle

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


def test_a_finished_meeting_whose_events_redis_lost_gets_them_again_then_its_phase(
    database_url: str, redis_client: redis.Redis, redis_prefix: str
) -> None:
    """Meeting "done" finished in the database, but Redis lost seq 1's event and the recording's (an
    empty restart, say): completed waits for them, so their work is queued again; once they are out (the
    workers' part, done here by hand), the reconciler says completed itself, and then nothing more."""
    upgrade(database_url)
    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    keys = Keys(redis_prefix)
    publish = Publisher(redis_client, keys, 100)
    with transaction(sessions) as session:
        generation = queries.generation(queries.create_meeting(session, "done", FMT))
        queries.get_meeting(session, "done").ended_at = datetime.now(UTC)
        queries.create_meeting(session, "live", FMT)  # not ended: never looked at
        settle(session, "done", range(2))

    def mark(type_: events.EventType, name: str, value: str) -> None:
        publish.marked("done", type_, {}, generation=generation, mark=name, value=value, once=True)

    def queued(stream: str) -> list[int]:
        entries: Any = redis_client.xrange(stream)
        return [int(fields["seq"]) for _, fields in entries]

    def phases() -> list[str]:
        entries: Any = redis_client.xrange(keys.events("done"))
        return [json.loads(f["data"])["phase"] for _, f in entries if f["type"] == "meeting.phase"]

    mark("chunk.transcribed", announcements.transcribed(0), "1")
    later = datetime.now(UTC) + timedelta(minutes=1)
    assert announce_lost(publish, sessions, grace_s=30) == 0  # ended just now: its workers may be at it
    assert announce_lost(publish, sessions, grace_s=30, now=lambda: later) == 1
    assert (queued(keys.transcribe), queued(keys.concat)) == ([1], [1])
    assert phases() == []

    mark("chunk.transcribed", announcements.transcribed(1), announcements.WITH_TAIL)
    mark("recording.extended", announcements.RECORDING, "1")
    assert announce_lost(publish, sessions, grace_s=30, now=lambda: later) == 1
    assert phases() == ["completed"]
    assert announce_lost(publish, sessions, grace_s=30, now=lambda: later) == 0
    assert (queued(keys.transcribe), queued(keys.concat)) == ([1], [1])
    engine.dispose()
