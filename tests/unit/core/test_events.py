"""Event publishing on real Redis: the public shape, announcing exactly once across redeliveries, and
nothing kept for a deleted meeting."""

from __future__ import annotations

import asyncio

import pytest
import redis

from audioflow.core.events import (
    DELETED_TTL_S,
    WriteBatch,
    aforget,
    announced,
    decode_event,
    publish,
    publish_args,
    publish_marked,
)
from audioflow.core.keys import Keys
from audioflow.core.redis_client import async_redis_client

GEN = "1700000000000001"  # a meeting's generation (see queries.generation)


def _events(client: redis.Redis, keys: Keys, meeting_id: str) -> list[dict[str, object]]:
    entries: list[tuple[str, dict[str, str]]] = client.xrange(keys.events(meeting_id))  # type: ignore[assignment]
    return [decode_event(meeting_id, event_id, fields) for event_id, fields in entries]


def test_published_events_have_the_public_shape(redis_client: redis.Redis, redis_prefix: str) -> None:
    keys = Keys(redis_prefix)
    event_id = publish(redis_client, keys, "m1", "log", {"message": "hi"}, generation=GEN, maxlen=100)
    [event] = _events(redis_client, keys, "m1")
    assert event["id"] == event_id and event["meeting_id"] == "m1" and event["type"] == "log"
    assert event["data"] == {"message": "hi"} and isinstance(event["ts"], float)
    assert _events(redis_client, keys, "m2") == []


def test_marked_once_publishes_a_redelivered_announcement_once(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    keys = Keys(redis_prefix)
    data = {"seq": 3, "text": "hello"}
    for _ in range(3):  # the first delivery, then two redeliveries of the same work
        publish_marked(
            redis_client,
            keys,
            "m1",
            "chunk.transcribed",
            data,
            generation=GEN,
            mark="transcribed:3",
            once=True,
            maxlen=100,
        )
    assert [e["data"] for e in _events(redis_client, keys, "m1")] == [data]
    assert announced(redis_client, keys, "m1", "transcribed:3") == "1"
    assert announced(redis_client, keys, "m1", "transcribed:4") is None


def test_marked_not_once_records_the_latest_value(redis_client: redis.Redis, redis_prefix: str) -> None:
    keys = Keys(redis_prefix)
    for through in (1, 4):
        assert publish_marked(
            redis_client,
            keys,
            "m1",
            "recording.extended",
            {"concatenated_through": through},
            generation=GEN,
            mark="recording",
            value=str(through),
            once=False,
            maxlen=100,
        )
    assert announced(redis_client, keys, "m1", "recording") == "4"
    assert [e["data"]["concatenated_through"] for e in _events(redis_client, keys, "m1")] == [1, 4]  # type: ignore[index]


def test_nothing_is_kept_for_a_deleted_meeting_and_a_new_one_starts_empty(
    redis_client: redis.Redis, redis_server_url: str, redis_prefix: str
) -> None:
    """What a worker still publishes for a meeting after its DELETE (it read the meeting just before) is
    dropped: no event, no mark, no re-created stream. A new meeting with the same id publishes as usual."""
    keys = Keys(redis_prefix)
    assert publish(redis_client, keys, "m1", "log", {"message": "old"}, generation=GEN, maxlen=100)

    async def forget() -> None:
        client = async_redis_client(redis_server_url, socket_timeout=5.0)
        try:
            await aforget(client, keys, "m1", GEN)
        finally:
            await client.aclose()

    asyncio.run(forget())
    assert not redis_client.exists(keys.events("m1"), keys.announced("m1"))
    assert 0 < redis_client.ttl(keys.deleted("m1")) <= DELETED_TTL_S
    late = {"seq": 1, "text": "late"}
    assert publish(redis_client, keys, "m1", "log", {"message": "late"}, generation=GEN, maxlen=100) is None
    assert not publish_marked(
        redis_client, keys, "m1", "chunk.transcribed", late, generation=GEN, mark="t:1", once=True, maxlen=100
    )
    assert (
        publish(redis_client, keys, "m1", "log", {"message": "a log line"}, generation=None, maxlen=100)
        is None
    )
    assert not redis_client.exists(keys.events("m1"), keys.announced("m1"))

    reborn = str(int(GEN) + 1)
    assert publish(
        redis_client, keys, "m1", "meeting.phase", {"phase": "pending"}, generation=reborn, maxlen=100
    )
    assert publish(redis_client, keys, "m1", "log", {"message": "new"}, generation=None, maxlen=100)
    assert [e["type"] for e in _events(redis_client, keys, "m1")] == ["meeting.phase", "log"]


def test_a_log_line_without_a_generation_never_creates_a_stream(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    keys = Keys(redis_prefix)
    assert publish(redis_client, keys, "m2", "log", {"message": "x"}, generation=None, maxlen=100) is None
    assert not redis_client.exists(keys.events("m2"))


def test_a_write_batch_writes_its_entries_and_events_in_one_call(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    """The work items and events of several chunks, one script call: the same entries and events a
    client's XADDs and publishes would write, in order, and an event for a deleted generation dropped
    while the rest of the batch is written."""
    keys = Keys(redis_prefix)
    redis_client.sadd(keys.deleted("gone"), GEN)
    batch = WriteBatch()
    for seq in (1, 2):
        batch.xadd(keys.transcribe, {"meeting_id": "m1", "seq": str(seq), "generation": GEN})
        batch.xadd(keys.concat, {"meeting_id": "m1", "seq": str(seq)})
        batch.publish(publish_args(keys, "m1", "chunk.received", {"seq": seq}, generation=GEN, maxlen=100))
    batch.publish(publish_args(keys, "gone", "log", {"message": "late"}, generation=GEN, maxlen=100))
    batch.publish(publish_args(keys, "m1", "log", {"message": "x"}, generation=None, maxlen=100))
    batch.execute(redis_client)
    transcribe: list[tuple[str, dict[str, str]]] = redis_client.xrange(keys.transcribe)  # type: ignore[assignment]
    concat: list[tuple[str, dict[str, str]]] = redis_client.xrange(keys.concat)  # type: ignore[assignment]
    assert [f for _, f in transcribe] == [{"meeting_id": "m1", "seq": s, "generation": GEN} for s in "12"]
    assert [f for _, f in concat] == [{"meeting_id": "m1", "seq": s} for s in "12"]
    assert [(e["type"], e["data"]) for e in _events(redis_client, keys, "m1")] == [
        ("chunk.received", {"seq": 1}),
        ("chunk.received", {"seq": 2}),
        ("log", {"message": "x"}),  # no generation: written because the stream exists
    ]
    assert not redis_client.exists(keys.events("gone"))


def test_a_write_batch_takes_only_publish_args_and_an_empty_one_sends_nothing(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    keys = Keys(redis_prefix)
    batch = WriteBatch()
    with pytest.raises(ValueError, match="publish_args"):
        batch.publish(("return 1", 0))
    with pytest.raises(ValueError, match="publish_args"):
        batch.publish(publish_args(keys, "m1", "log", {}, generation=GEN, maxlen=100)[:-1])
    calls_before = redis_client.info("commandstats").get("cmdstat_eval", {}).get("calls", 0)
    batch.execute(redis_client)
    assert redis_client.info("commandstats").get("cmdstat_eval", {}).get("calls", 0) == calls_before
