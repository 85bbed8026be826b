"""A running audioflow stack of a benchmark's own (fresh database, own Redis key prefix) for a section to
load. The services and the machine description come from ``tests.services`` and ``tests.machine``."""

from __future__ import annotations

import contextlib
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from bench.common import BenchConfig
from tests.integration.stack import Stack, make_stack
from tests.services import delete_prefix, fresh_postgres_database


def run_prefix() -> str:
    """A Redis key prefix of this run's own."""
    return f"afbench:{uuid.uuid4().hex[:10]}:"


@contextlib.contextmanager
def bench_stack(cfg: BenchConfig, name: str, **env: str) -> Iterator[Stack]:
    """A stack (built, not started) on a fresh PostgreSQL database and an own Redis prefix; its processes
    are stopped, its database dropped and its keys deleted afterwards."""
    prefix = run_prefix()
    with (
        tempfile.TemporaryDirectory(prefix=f"afbench-{name}-") as workdir,
        fresh_postgres_database(cfg.postgres_url) as database_url,
    ):
        stack = make_stack(Path(workdir), cfg.redis_url, database_url, prefix, **env)
        try:
            yield stack
        finally:
            stack.stop()
            delete_prefix(cfg.redis_url, prefix)
