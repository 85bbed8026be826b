"""Shared fixtures: real Redis and real databases (PostgreSQL and SQLite), isolated per test."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests import services


@pytest.fixture(scope="session")
def redis_server_url() -> Iterator[str]:
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    with services.embedded_redis() as started:
        yield started


@pytest.fixture
def redis_prefix(redis_server_url: str) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    prefix = services.redis_prefix()
    yield prefix
    services.delete_prefix(redis_server_url, prefix)


@pytest.fixture
def redis_client(redis_server_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    url = os.environ.get("DATABASE_URL")
    if url and not url.startswith("sqlite"):
        yield services.psycopg_conninfo(url)
        return
    with services.embedded_postgres() as started:
        yield started


@pytest.fixture(params=["postgresql", "sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of this test's own: PostgreSQL and SQLite in turn."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'audioflow.db'}"
        return
    server = request.getfixturevalue("postgres_server_url")
    with services.fresh_postgres_database(server) as url:
        yield url


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Clear audioflow settings from the environment so a test sees only what it sets."""
    for name in list(os.environ):
        if name.startswith("AUDIOFLOW_") or name in ("REDIS_URL", "DATABASE_URL"):
            with contextlib.suppress(KeyError):
                monkeypatch.delenv(name)
