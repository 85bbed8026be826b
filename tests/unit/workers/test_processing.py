"""The processing worker's handler (``processing.handle``) with a scripted engine (a test double) on
real Redis and both databases: what it keeps of a chunk depends on whether the meeting has ended."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis

from audioflow.core.db import queries
from audioflow.core.db.engine import make_engine, make_sessionmaker, transaction
from audioflow.core.db.migrate import upgrade
from audioflow.core.keys import Keys
from audioflow.core.storage import LocalStorage
from audioflow.core.streams.consumer import Entry, Outcome
from audioflow.workers.processing import ProcessingDeps, handle
from audioflow.workers.publisher import Publisher
from audioflow.workers.stt import Word
from tests.factories import SPEECH_FORMAT, wav_bytes
from tests.unit.workers.test_stt import ScriptedFakeEngine

SILENT_5S = bytes(2 * 16000 * 5)


@pytest.mark.parametrize("ended", [False, True], ids=["live", "ended"])
def test_the_last_chunk_of_an_ended_meeting_keeps_its_last_words(
    ended: bool,
    database_url: str,
    redis_client: redis.Redis,
    redis_prefix: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    upgrade(database_url)
    engine = make_engine(database_url)
    request.addfinalizer(engine.dispose)
    sessions = make_sessionmaker(engine)
    storage = LocalStorage(tmp_path, fsync=False)
    body = wav_bytes(SILENT_5S)
    with transaction(sessions) as session:
        meeting = queries.create_meeting(session, "tail", SPEECH_FORMAT)
        if ended:
            meeting.ended_at = datetime.now(UTC)
    for seq in (0, 1):
        storage.put_chunk("tail", seq, body)
        with transaction(sessions) as session:
            queries.insert_chunk(
                session,
                "tail",
                seq,
                sha256="0" * 64,
                size_bytes=len(body),
                data_bytes=len(SILENT_5S),
                duration_s=5.0,
            )
    # A word inside the chunk, and one still being spoken at its end (after the trailing cut, which
    # silence puts 0.1 s before the end).
    scripted = ScriptedFakeEngine([Word("inside", 3.0, 3.5), Word("last", 5.9, 6.0)])
    deps = ProcessingDeps(sessions, storage, scripted, Publisher(redis_client, Keys(redis_prefix), 1000), 1.0)

    for seq in (0, 1):
        outcome = handle(Entry(f"0-{seq + 1}", {"meeting_id": "tail", "seq": str(seq)}, 1), deps)
        assert outcome is Outcome.ACK

    with sessions() as session:
        texts = [segment.text for segment in queries.segments(session, "tail")]
    # Seq 0 has a successor, which hears its last word whole: it leaves it. Seq 1 keeps it only when the
    # meeting has ended (no successor will come); live, it waits for seq 2 as every chunk does.
    assert texts == ["inside", "inside last" if ended else "inside"]
