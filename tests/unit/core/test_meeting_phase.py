"""core.meeting_phase, the one writer of ``meeting.phase``: the pipeline's arguments and a direct publish
give the same event, and "finished" is said only of an ended meeting whose work is all settled."""

from __future__ import annotations

from datetime import UTC, datetime

import redis

from audioflow.core import meeting_phase
from audioflow.core.db import queries
from audioflow.core.db.engine import make_engine, make_sessionmaker, transaction
from audioflow.core.db.migrate import upgrade
from audioflow.core.db.models import Chunk, Recording, Segment
from audioflow.core.events import decode_event
from audioflow.core.keys import Keys
from audioflow.core.wav import AudioFormat

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


def test_finished_only_once_ended_and_settled(database_url: str) -> None:
    upgrade(database_url)
    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    with transaction(sessions) as session:
        generation = queries.generation(queries.create_meeting(session, "f", AudioFormat(16000, 1, 16)))
        session.add(Chunk(meeting_id="f", seq=0, sha256="0" * 64, size_bytes=0, data_bytes=0, duration_s=1.0))
        session.add(
            Segment(
                meeting_id="f",
                seq=0,
                engine="e",
                start_s=0.0,
                end_s=1.0,
                text="",
                decode_s=0.0,
                tail_kept=True,
            )
        )
        session.add(Recording(meeting_id="f", concatenated_through=0))
    with sessions() as session:
        assert meeting_phase.finished_phase(session, "f", generation) is None  # live: never finished
    with transaction(sessions) as session:
        queries.get_meeting(session, "f").ended_at = datetime.now(UTC)
    with sessions() as session:
        assert meeting_phase.finished_phase(session, "f", generation) == "completed"
        assert meeting_phase.finished_phase(session, "f", "1") is None  # another meeting of that id
    engine.dispose()
