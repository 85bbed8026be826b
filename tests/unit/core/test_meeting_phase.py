"""core.meeting_phase, the one writer of ``meeting.phase``: the pipeline's arguments and a direct publish
give the same event, "finished" is said only of an ended meeting whose work is all settled, ``completed``
only once every event it sums up is out, and no phase read before it lands after it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import redis
from sqlalchemy.orm import Session, sessionmaker

from audioflow.core import announcements, events, meeting_phase
from audioflow.core.db import queries
from audioflow.core.db.engine import make_engine, make_sessionmaker, transaction
from audioflow.core.db.migrate import upgrade
from audioflow.core.events import decode_event
from audioflow.core.keys import Keys
from audioflow.core.wav import AudioFormat
from tests.rows import settle

GEN = "1700000000000001"


def test_pipeline_args_and_a_direct_publish_write_the_same_event(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    keys = Keys(redis_prefix)
    pipe = redis_client.pipeline(transaction=True)
    pipe.eval(*meeting_phase.phase_event_args(keys, "m1", "live", GEN, 100))
    pipe.execute()
    meeting_phase.publish_phase(redis_client, keys, "m1", "completed", generation=GEN, maxlen=100)
    entries: list[tuple[str, dict[str, str]]] = redis_client.xrange(keys.events("m1"))  # type: ignore[assignment]
    events = [decode_event("m1", i, f) for i, f in entries]
    assert [(e["type"], e["data"]) for e in events] == [
        ("meeting.phase", {"phase": "live"}),
        ("meeting.phase", {"phase": "completed"}),
    ]


def _phases(redis_client: redis.Redis, keys: Keys, meeting_id: str) -> list[str]:
    entries: list[tuple[str, dict[str, str]]] = redis_client.xrange(keys.events(meeting_id))  # type: ignore[assignment]
    return [
        decode_event(meeting_id, i, f)["data"]["phase"] for i, f in entries if f["type"] == "meeting.phase"
    ]


def test_no_phase_read_before_the_meeting_finished_lands_after_it(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    keys = Keys(redis_prefix)
    for phase in ("live", "completed", "finalizing", "live", "completed"):
        meeting_phase.publish_phase(redis_client, keys, "m2", phase, generation=GEN, maxlen=100)
    # A later completed is still said (a late chunk may have been settled since); nothing before it is.
    assert _phases(redis_client, keys, "m2") == ["live", "completed", "completed"]


@pytest.fixture
def settled(database_url: str) -> Iterator[tuple[sessionmaker[Session], str]]:
    """Meeting "f" with chunk 0 transcribed with its tail and recorded (its rows say finished once it
    ends): the sessions, and its generation."""
    upgrade(database_url)
    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    with transaction(sessions) as session:
        generation = queries.generation(queries.create_meeting(session, "f", AudioFormat(16000, 1, 16)))
        settle(session, "f", [0])
    yield sessions, generation
    engine.dispose()


def test_finished_only_once_ended_and_settled(settled: tuple[sessionmaker[Session], str]) -> None:
    sessions, generation = settled
    with sessions() as session:
        assert meeting_phase.finished_phase(session, "f", generation) is None  # live: never finished
    with transaction(sessions) as session:
        queries.get_meeting(session, "f").ended_at = datetime.now(UTC)
    with sessions() as session:
        assert meeting_phase.finished_phase(session, "f", generation) == "completed"
        assert meeting_phase.finished_phase(session, "f", "1") is None  # another meeting of that id


def test_completed_waits_until_every_event_it_sums_up_is_out(
    settled: tuple[sessionmaker[Session], str], redis_client: redis.Redis, redis_prefix: str
) -> None:
    sessions, generation = settled
    with transaction(sessions) as session:
        queries.get_meeting(session, "f").ended_at = datetime.now(UTC)
    keys = Keys(redis_prefix)

    def announceable() -> bool:
        with sessions() as session:
            return meeting_phase.announceable(session, redis_client, keys, "f", "completed")

    def mark(type_: events.EventType, name: str, value: str) -> None:
        events.publish_marked(
            redis_client,
            keys,
            "f",
            type_,
            {},
            mark=name,
            value=value,
            once=True,
            generation=generation,
            maxlen=100,
        )

    assert not announceable()  # committed, but neither the chunk's event nor the recording's is out
    mark("chunk.transcribed", announcements.transcribed(0), announcements.WITH_TAIL)
    assert not announceable()
    mark("recording.extended", announcements.RECORDING, "0")
    assert announceable()
    with sessions() as session:  # other phases never wait
        assert meeting_phase.announceable(session, redis_client, keys, "g", "finalizing")
