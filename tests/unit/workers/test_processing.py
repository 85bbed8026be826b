"""The processing worker's handler (``processing.handle``) with a scripted engine (a test double) on
real Redis and both databases: what it keeps of a chunk depends on whether the meeting has ended."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy.orm import Session, sessionmaker

from audioflow.core import announcements
from audioflow.core.db import queries
from audioflow.core.db.engine import make_engine, make_sessionmaker, transaction
from audioflow.core.db.migrate import upgrade
from audioflow.core.db.models import Recording, Segment
from audioflow.core.keys import Keys
from audioflow.core.storage import ChunkStore, LocalStorage
from audioflow.core.streams.consumer import Entry, Outcome
from audioflow.workers.processing import ProcessingDeps, handle
from audioflow.workers.publisher import Publisher
from audioflow.workers.stt import Word
from tests.factories import SPEECH_FORMAT, wav_bytes
from tests.unit.workers.test_stt import ScriptedFakeEngine

SILENT_5S = bytes(2 * 16000 * 5)


@pytest.fixture
def sessions(database_url: str) -> Iterator[sessionmaker[Session]]:
    upgrade(database_url)
    engine = make_engine(database_url)
    yield make_sessionmaker(engine)
    engine.dispose()  # its connections closed, not left to the garbage collector


def _store(sessions: sessionmaker[Session], storage: ChunkStore, meeting_id: str, seq: int) -> None:
    """A 5 s silent chunk, stored and recorded as the gateway does."""
    body = wav_bytes(SILENT_5S)
    storage.put_chunk(meeting_id, seq, body)
    with transaction(sessions) as session:
        queries.insert_chunk(
            session,
            meeting_id,
            seq,
            sha256="0" * 64,
            size_bytes=len(body),
            data_bytes=len(SILENT_5S),
            duration_s=5,
        )


def _meeting(
    sessions: sessionmaker[Session], storage: ChunkStore, meeting_id: str, seqs: range, *, ended: bool
) -> None:
    """A meeting with 5 s silent chunks ``seqs`` stored, ended or not."""
    with transaction(sessions) as session:
        meeting = queries.create_meeting(session, meeting_id, SPEECH_FORMAT)
        meeting.ended_at = datetime.now(UTC) if ended else None
    for seq in seqs:
        _store(sessions, storage, meeting_id, seq)


def _deps(
    sessions: sessionmaker[Session],
    tmp_path: Path,
    redis_client: redis.Redis,
    redis_prefix: str,
    words: list[Word],
) -> tuple[ProcessingDeps, ScriptedFakeEngine]:
    """Processing on local files and a real Redis, with a fake engine that hears ``words`` in every chunk."""
    scripted = ScriptedFakeEngine(words)
    publisher = Publisher(redis_client, Keys(redis_prefix), 1000)
    return ProcessingDeps(sessions, LocalStorage(tmp_path, fsync=False), scripted, publisher, 1.0), scripted


@pytest.mark.parametrize("ended", [False, True], ids=["live", "ended"])
def test_the_last_chunk_of_an_ended_meeting_keeps_its_last_words(
    ended: bool,
    sessions: sessionmaker[Session],
    redis_client: redis.Redis,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    # A word inside the chunk, and one still being spoken at its end (after the trailing cut, which
    # silence puts 0.1 s before the end).
    deps, _ = _deps(
        sessions, tmp_path, redis_client, redis_prefix, [Word("inside", 3.0, 3.5), Word("last", 5.9, 6.0)]
    )
    _meeting(sessions, deps.storage, "tail", range(2), ended=ended)

    for seq in (0, 1):
        outcome = handle(Entry(f"0-{seq + 1}", {"meeting_id": "tail", "seq": str(seq)}, 1), deps)
        assert outcome is Outcome.ACK

    with sessions() as session:
        texts = [segment.text for segment in queries.segments(session, "tail")]
    # Seq 0 has a successor, which hears its last word whole: it leaves it. Seq 1 keeps it only when the
    # meeting has ended (no successor will come); live, it waits for seq 2 as every chunk does.
    assert texts == ["inside", "inside last" if ended else "inside"]


def test_a_meeting_ended_after_its_last_chunk_was_transcribed_gets_that_chunks_tail(
    sessions: sessionmaker[Session],
    redis_client: redis.Redis,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    # Live, seq 0 leaves its last word to a successor; then the meeting ends with it (the end route
    # queues it again): decoded again with its tail, the row replaced, announced once more, and the
    # meeting's phase waits for it.
    deps, scripted = _deps(
        sessions, tmp_path, redis_client, redis_prefix, [Word("inside", 3.0, 3.5), Word("last", 4.9, 5.0)]
    )
    _meeting(sessions, deps.storage, "late-end", range(1), ended=False)
    keys = Keys(redis_prefix)
    work = Entry("0-1", {"meeting_id": "late-end", "seq": "0"}, 1)

    assert handle(work, deps) is Outcome.ACK
    with transaction(sessions) as session:
        meeting = queries.get_meeting(session, "late-end")
        meeting.ended_at = datetime.now(UTC)
    with sessions() as session:
        assert queries.meeting_status(session, "late-end").chunks_transcribed == 1
        segment = queries.get_segment(session, "late-end", 0)
        assert segment is not None and (segment.text, segment.tail_kept) == ("inside", False)

    assert handle(work, deps) is Outcome.ACK
    assert handle(work, deps) is Outcome.ACK  # again: nothing more to do
    with sessions() as session:
        segment = queries.get_segment(session, "late-end", 0)
        assert segment is not None and (segment.text, segment.tail_kept) == ("inside last", True)
    assert len(scripted.seconds_heard) == 2
    published: Any = redis_client.xrange(keys.events("late-end"))
    texts = [
        json.loads(fields["data"])["text"] for _, fields in published if fields["type"] == "chunk.transcribed"
    ]
    assert texts == ["inside", "inside last"]


def test_an_ended_meeting_is_finalizing_until_its_last_segment_has_its_tail(
    sessions: sessionmaker[Session],
) -> None:
    with transaction(sessions) as session:
        meeting = queries.create_meeting(session, "tail-phase", SPEECH_FORMAT)
        meeting.ended_at = datetime.now(UTC)
        queries.insert_chunk(
            session, "tail-phase", 0, sha256="0" * 64, size_bytes=44, data_bytes=0, duration_s=0
        )
        session.add(Recording(meeting_id="tail-phase", concatenated_through=0))
        session.add(
            Segment(meeting_id="tail-phase", seq=0, engine="x", start_s=0, end_s=0, text="", decode_s=0)
        )
    with sessions() as session:
        assert queries.meeting_status(session, "tail-phase").phase == "finalizing"
    with transaction(sessions) as session:
        segment = queries.get_segment(session, "tail-phase", 0)
        assert segment is not None
        segment.tail_kept = True
    with sessions() as session:
        assert queries.meeting_status(session, "tail-phase").phase == "completed"


def test_completed_follows_a_peers_event_that_was_still_on_its_way(
    sessions: sessionmaker[Session],
    redis_client: redis.Redis,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    # Worker A committed seq 0's segment and was about to publish its event (here: it died there). Worker
    # B then transcribes seq 1, the last, which finishes the meeting in the database: B holds completed
    # back. A's redelivery publishes seq 0's event and then completed, so completed is the last event.
    deps, _ = _deps(sessions, tmp_path, redis_client, redis_prefix, [Word("inside", 3.0, 3.5)])
    keys = Keys(redis_prefix)
    _meeting(sessions, deps.storage, "race", range(2), ended=True)
    with transaction(sessions) as session:
        generation = queries.generation(queries.get_meeting(session, "race"))
        session.add(Recording(meeting_id="race", concatenated_through=1))
        session.add(
            Segment(meeting_id="race", seq=0, engine="x", start_s=0, end_s=5, text="zero", decode_s=0)
        )
    deps.publish.marked(
        "race",
        "recording.extended",
        {"concatenated_through": 1},
        generation=generation,
        mark=announcements.RECORDING,
        value="1",
        once=False,
    )

    def told() -> list[tuple[str, Any]]:
        published: Any = redis_client.xrange(keys.events("race"))
        data = [(fields["type"], json.loads(fields["data"])) for _, fields in published]
        return [(type_, fields.get("phase", fields.get("seq"))) for type_, fields in data]

    assert handle(Entry("0-2", {"meeting_id": "race", "seq": "1"}, 1), deps) is Outcome.ACK
    with sessions() as session:
        assert queries.meeting_status(session, "race").phase == "completed"
    assert told() == [("recording.extended", None), ("chunk.transcribed", 1)]  # held back

    assert handle(Entry("0-1", {"meeting_id": "race", "seq": "0"}, 2), deps) is Outcome.ACK
    assert told()[2:] == [("chunk.transcribed", 0), ("meeting.phase", "completed")]
    # Another redelivery announces nothing twice; it may say completed again (any worker that finds the
    # meeting finished may), never anything before it.
    assert handle(Entry("0-1", {"meeting_id": "race", "seq": "0"}, 3), deps) is Outcome.ACK
    assert set(told()[4:]) <= {("meeting.phase", "completed")}


def test_a_redelivered_chunk_is_settled_on_one_connection_at_a_time(
    database_url: str, redis_client: redis.Redis, redis_prefix: str, tmp_path: Path
) -> None:
    """A chunk transcribed already (a redelivery, or a duplicate's work) is announced again after its
    read is over: with a pool of one connection, announcing it must not wait for a second one."""
    upgrade(database_url)
    engine = make_engine(database_url, pool_size=1, max_overflow=0, pool_timeout=2)
    try:
        deps, _ = _deps(
            make_sessionmaker(engine), tmp_path, redis_client, redis_prefix, [Word("hi", 1.0, 1.5)]
        )
        _meeting(deps.sessions, deps.storage, "again", range(2), ended=False)
        for delivery in (1, 2):  # the second finds its segment stored and announces it
            assert handle(Entry("0-1", {"meeting_id": "again", "seq": "0"}, delivery), deps) is Outcome.ACK
        with deps.sessions() as session:
            assert [s.text for s in queries.segments(session, "again")] == ["hi"]
    finally:
        engine.dispose()
