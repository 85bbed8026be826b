"""Integration fixtures: a whole running stack per test, on PostgreSQL and on SQLite."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.stack import Stack, make_stack

pytestmark = pytest.mark.integration


@pytest.fixture
def make(
    tmp_path: Path, redis_server_url: str, database_url: str, redis_prefix: str
) -> Iterator[Callable[..., Stack]]:
    """Build (not start) a stack; the test chooses which processes to run. Everything is stopped after."""
    stacks: list[Stack] = []

    def build(**env: str) -> Stack:
        stack = make_stack(tmp_path, redis_server_url, database_url, redis_prefix, **env)
        stacks.append(stack)
        return stack

    yield build
    for stack in stacks:
        stack.stop()


@pytest.fixture
def stack(make: Callable[..., Stack]) -> Stack:
    """Gateway, one processing worker and one concat worker."""
    running = make()
    running.start_api()
    running.start_worker("processing")
    running.start_worker("concat")
    return running


@pytest.fixture
def gateway(make: Callable[..., Stack]) -> Stack:
    """The gateway alone (no workers): for ingest and API contract tests."""
    running = make()
    running.start_api()
    return running
