"""Where each chunk starts on a meeting's timeline, from its one Python owner (``queries.meeting_timeline``
and ``queries.chunk_start``, on both databases), against the cases in frontend/src/timeline.cases.json.
The page's ``chunkStarts`` (frontend/src/state.ts), which mirrors it, runs the same cases in
frontend/src/state.test.ts, so the two cannot drift apart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from audioflow.core.db import queries
from audioflow.core.db.engine import make_engine, make_sessionmaker, transaction
from audioflow.core.db.migrate import upgrade
from audioflow.core.db.models import Gap
from audioflow.core.wav import AudioFormat

CASES: list[dict[str, Any]] = json.loads(
    (Path(__file__).parents[3] / "frontend" / "src" / "timeline.cases.json").read_text()
)
RATE = 16000


def test_chunk_starts(database_url: str) -> None:
    upgrade(database_url)
    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    for case in CASES:
        meeting_id = case["name"]
        with transaction(sessions) as session:
            queries.create_meeting(session, meeting_id, AudioFormat(RATE, 1, 16))
            for seq, seconds in case["durations"]:
                queries.insert_chunk(
                    session, meeting_id, seq, sha256="0" * 64, size_bytes=0, data_bytes=0, duration_s=seconds
                )
            for seq, seconds in case["gaps"]:
                session.add(Gap(meeting_id=meeting_id, seq=seq, frames=round(seconds * RATE)))
        expected = {int(seq): start for seq, start in case["expected"].items()}
        with sessions() as session:
            meeting = queries.get_meeting(session, meeting_id)
            assert queries.meeting_timeline(session, meeting) == pytest.approx(expected), meeting_id
            for seq, start in expected.items():
                assert queries.chunk_start(session, meeting, seq) == pytest.approx(start), (meeting_id, seq)
    engine.dispose()
