"""The short chaos run on every CI run: 3 meetings x 40 chunks while workers are SIGKILLed every 2 s.

PostgreSQL only: the full pipeline with restarts every 2 s is what costs time here, and SQLite's
behaviour under concurrent writers is covered by the integration tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import services
from tests.chaos.controller import ChaosConfig, run_chaos

pytestmark = pytest.mark.integration

SHORT = ChaosConfig(
    meetings=3,
    chunks=40,
    chunk_seconds=0.5,
    kill_every_s=2.0,
    seed=7,
    duplicates=4,
    upload_rate=2.0,  # ~22 s of uploads, so kills land while chunks arrive and while they are processed
    min_kills=8,
    chaos_max_s=90.0,  # on a machine so busy that the work takes longer, the rest is done without kills
    settle_timeout_s=300.0,
)


@pytest.fixture
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    with services.fresh_postgres_database(postgres_server_url) as url:
        yield url


@pytest.mark.timeout(600)  # ~1 min on an idle 2-core machine; much more when others share it
def test_meetings_come_out_exact_while_workers_are_sigkilled(
    tmp_path: Path, redis_server_url: str, redis_prefix: str, postgres_url: str
) -> None:
    result = run_chaos(
        SHORT,
        workdir=tmp_path,
        redis_url=redis_server_url,
        database_url=postgres_url,
        prefix=redis_prefix,
        progress=print,  # shown by pytest when the test fails
    )
    print(result.summary())
    assert sum(result.kills.values()) >= 1, "no worker was killed"
    assert result.passed, f"{result.summary()}\nworker logs: {tmp_path}"
