"""Event publishing on real Redis: the public shape, and announcing exactly once across redeliveries."""

from __future__ import annotations

import redis

from audioflow.core.events import announced, decode_event, publish, publish_marked
from audioflow.core.keys import Keys


def _events(client: redis.Redis, keys: Keys, meeting_id: str) -> list[dict[str, object]]:
    entries: list[tuple[str, dict[str, str]]] = client.xrange(keys.events(meeting_id))  # type: ignore[assignment]
    return [decode_event(meeting_id, event_id, fields) for event_id, fields in entries]


def test_published_events_have_the_public_shape(redis_client: redis.Redis, redis_prefix: str) -> None:
    keys = Keys(redis_prefix)
    event_id = publish(redis_client, keys, "m1", "log", {"message": "hi"}, maxlen=100)
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
            redis_client, keys, "m1", "chunk.transcribed", data, mark="transcribed:3", once=True, maxlen=100
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
            mark="recording",
            value=str(through),
            once=False,
            maxlen=100,
        )
    assert announced(redis_client, keys, "m1", "recording") == "4"
    assert [e["data"]["concatenated_through"] for e in _events(redis_client, keys, "m1")] == [1, 4]  # type: ignore[index]
