"""queries.chunk_start (two aggregates) agrees with meeting_timeline (every row) on both databases; a
meeting's generation reads back as written."""

from __future__ import annotations

import pytest
from sqlalchemy import delete

from audioflow.core.db import queries
from audioflow.core.db.engine import make_engine, make_sessionmaker, transaction
from audioflow.core.db.migrate import upgrade
from audioflow.core.db.models import Chunk, Gap, Meeting
from audioflow.core.wav import AudioFormat

FMT = AudioFormat(16000, 1, 16)


def test_chunk_start_agrees_with_the_whole_timeline(database_url: str) -> None:
    upgrade(database_url)
    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    durations = {0: 2.0, 1: 1.5, 3: 2.25, 4: 0.5, 6: 1.0, 7: 3.0}  # 2 bridged, 5 bridged then arrived late
    with transaction(sessions) as session:
        queries.create_meeting(session, "t", FMT)
        for seq, seconds in {**durations, 5: 0.75}.items():
            session.add(
                Chunk(
                    meeting_id="t", seq=seq, sha256="0" * 64, size_bytes=0, data_bytes=0, duration_s=seconds
                )
            )
        session.add(Gap(meeting_id="t", seq=2, frames=24000))  # 1.5 s of silence
        session.add(Gap(meeting_id="t", seq=5, frames=8000))  # the late chunk's own length counts
    with sessions() as session:
        meeting = session.get(Meeting, "t")
        assert meeting is not None
        timeline = queries.meeting_timeline(session, meeting)
        assert timeline[6] == 2.0 + 1.5 + 1.5 + 2.25 + 0.5 + 0.75
        expected = {**timeline, 8: timeline[7] + 3.0}  # after the last seq: the whole meeting
        for seq, start in expected.items():
            assert queries.chunk_start(session, meeting, seq) == pytest.approx(start, abs=1e-9), seq
    engine.dispose()


def test_a_meetings_generation_reads_back_the_same_and_changes_when_the_id_is_reused(
    database_url: str,
) -> None:
    """The generation the gateway puts in work entries is the one workers read back (microseconds survive
    both databases), and a meeting created again with a deleted one's id has another."""
    upgrade(database_url)
    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    with transaction(sessions) as session:
        written = queries.generation(queries.create_meeting(session, "g", FMT))
    with sessions() as session:
        meeting = session.get(Meeting, "g")
        assert meeting is not None and queries.generation(meeting) == written
        assert queries.get_live_meeting(session, "g", written) is meeting
        assert queries.get_live_meeting(session, "g", None) is meeting
    with transaction(sessions) as session:
        session.execute(delete(Meeting).where(Meeting.id == "g"))
    with transaction(sessions) as session:
        reborn = queries.generation(queries.create_meeting(session, "g", FMT))
    assert reborn != written
    with sessions() as session:
        assert queries.get_live_meeting(session, "g", written) is None
        assert queries.get_live_meeting(session, "g", reborn) is not None
    engine.dispose()
