"""Gap bridging in the concat worker (``concat.advance``) on a clock the test owns: a missing seq is
waited for exactly the gap timeout, then silence as long as its predecessor takes its place, once;
the chunk arriving late changes nothing. Real Redis and both databases."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from audioflow.core.db import queries
from audioflow.core.db.engine import make_engine, make_sessionmaker, transaction
from audioflow.core.db.migrate import upgrade
from audioflow.core.db.models import Chunk
from audioflow.core.keys import Keys
from audioflow.core.storage import LocalStorage
from audioflow.core.wav import canonical_header
from audioflow.workers.concat import ConcatDeps, advance
from audioflow.workers.publisher import Publisher
from tests.factories import SPEECH_FORMAT, tone_pcm, wav_bytes

ARRIVED = datetime(2026, 1, 1, tzinfo=UTC)


def test_missing_seq_is_bridged_with_silence_after_the_gap_timeout(
    database_url: str,
    redis_client: redis.Redis,
    redis_prefix: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    request: pytest.FixtureRequest,
) -> None:
    upgrade(database_url)
    engine = make_engine(database_url)
    request.addfinalizer(engine.dispose)  # its connections closed, not left to the garbage collector
    sessions = make_sessionmaker(engine)
    storage = LocalStorage(tmp_path, fsync=False)
    keys = Keys(redis_prefix)
    pcms = {seq: tone_pcm(1.0, seed=seq) for seq in range(6)}

    def arrive(seq: int) -> None:
        data = wav_bytes(pcms[seq])
        storage.put_chunk("gappy", seq, data)
        with transaction(sessions) as session:
            session.add(
                Chunk(
                    meeting_id="gappy",
                    seq=seq,
                    sha256="0" * 64,
                    size_bytes=len(data),
                    data_bytes=len(pcms[seq]),
                    duration_s=1.0,
                    received_at=ARRIVED,
                )
            )

    with transaction(sessions) as session:
        queries.create_meeting(session, "gappy", SPEECH_FORMAT)
    for seq in (0, 1, 3, 4, 5):  # seq 2 never comes in time
        arrive(seq)
    now = ARRIVED.timestamp()
    deps = ConcatDeps(
        sessions,
        storage,
        Publisher(redis_client, keys, 1000),
        gap_timeout_s=2.0,  # the storage above does not fsync
        clock=lambda: now,
    )

    assert advance(deps, "gappy") == 2  # seqs 0 and 1; the rest waits behind seq 2
    now += 1.9
    assert advance(deps, "gappy") == 0  # not yet the gap timeout
    now += 0.1
    caplog.set_level(logging.WARNING, logger="audioflow.workers.concat")
    assert advance(deps, "gappy") == 4  # seq 2 bridged, then 3, 4 and 5

    with sessions() as session:
        status = queries.meeting_status(session, "gappy")
    assert list(status.gaps) == [2] and status.concatenated_through == 5
    assert status.chunks_concatenated == 5
    entries: Any = redis_client.xrange(keys.events("gappy"))
    extended = [json.loads(fields["data"]) for _, fields in entries if fields["type"] == "recording.extended"]
    assert [data["gaps"] for data in extended if data["gaps"]] == [[2]]
    assert [r.message for r in caplog.records if r.levelno == logging.WARNING] == [
        "seq 2 never arrived within 2 s: bridged with 1.00 s of silence"
    ]
    silence = bytes(len(pcms[1]))  # as long as its predecessor
    pieces = [pcms[0], pcms[1], silence, pcms[3], pcms[4], pcms[5]]
    expected = canonical_header(SPEECH_FORMAT, sum(map(len, pieces))) + b"".join(pieces)
    assert storage.recording_path("gappy").read_bytes() == expected

    # The late chunk is still stored, but the recording no longer changes.
    arrive(2)
    now += 10
    assert advance(deps, "gappy") == 0
    assert storage.recording_path("gappy").read_bytes() == expected
