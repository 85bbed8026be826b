"""The database work of one group commit, on real PostgreSQL: ``python -m bench.group_commit_db``.

wrk's end-to-end figures on this 2-core machine move by several percent from one run to the next,
as much as many single changes gain. This measures one part alone and steadily: the statements and
the commit of ``api/group_commit.py`` (``core/db/batch_ingest.py``) for batches of 32 new chunks
of 64 meetings, each with a webhook-id, as the gateway runs them under load. It reports the calling
thread's CPU time per batch (Python, driver and system calls; not PostgreSQL's own), the median of many
batches, per statement, and the wall time of the whole batch (PostgreSQL's work included); the
meetings grow by 250 chunks each over a run, as meetings under way do. With ``--also-src`` the same
runs for another tree's ``batch_ingest`` too (say, ``git archive`` of an older commit), alternately, in
processes of their own.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.services import embedded_postgres, fresh_postgres_database

MEETINGS, BATCH = 64, 32
# Trees since the chunks' insert records their deliveries too report 0 for the deliveries' own insert.
PARTS = (
    "meetings read (both reads, pipelined)",
    "webhook-ids read",
    "chunks insert",
    "deliveries insert",
    "commit",
)


def measure(database_url: str, rounds: int) -> dict[str, float]:
    """Median microseconds of thread CPU per batch, for each part and in all."""
    from audioflow.core.db import batch_ingest
    from audioflow.core.db.engine import make_engine, make_sessionmaker, transaction
    from audioflow.core.db.migrate import upgrade
    from audioflow.core.db.models import Chunk, Meeting

    upgrade(database_url)
    engine = make_engine(database_url, fsync=False, pool_size=1, max_overflow=0)
    sessions = make_sessionmaker(engine)
    with transaction(sessions) as session:  # meetings under way: each has its first chunk
        session.add_all(
            [Meeting(id=f"m{m}", sample_rate=16000, channels=1, bits=16) for m in range(MEETINGS)]
        )
        session.flush()
        session.add_all(
            [
                Chunk(
                    meeting_id=f"m{m}",
                    seq=0,
                    sha256="0" * 64,
                    size_bytes=32044,
                    data_bytes=32000,
                    duration_s=1.0,
                )
                for m in range(MEETINGS)
            ]
        )

    @contextlib.contextmanager
    def batch_transaction() -> Iterator[Any]:
        """What the tree's ``batch_ingest`` takes: a Core connection, or (older trees) an ORM session."""
        reader = getattr(batch_ingest, "held", None) or getattr(batch_ingest, "held_meetings")  # noqa: B009
        if "conn" in inspect.signature(reader).parameters:
            with engine.begin() as conn:
                yield conn
        else:
            with transaction(sessions) as session:
                yield session

    samples: list[list[float]] = []
    walls: list[float] = []
    for r in range(rounds):
        batch = [
            batch_ingest.NewChunk(
                f"m{k % MEETINGS}", 1 + k // MEETINGS, "a" * 64, 32044, 32000, 1.0, f"msg_{k}"
            )
            for k in range(r * BATCH, (r + 1) * BATCH)
        ]
        wall0 = time.perf_counter()
        marks = [time.thread_time()]
        with batch_transaction() as tx:
            webhook_ids = [c.webhook_id for c in batch if c.webhook_id]
            if held := getattr(batch_ingest, "held", None):  # both reads in one pipeline: one part
                held(tx, (c.meeting_id for c in batch), webhook_ids)
                marks.append(time.thread_time())
            else:  # older trees: a round trip each
                getattr(batch_ingest, "held_meetings")(tx, (c.meeting_id for c in batch))  # noqa: B009
                marks.append(time.thread_time())
                getattr(batch_ingest, "seen_webhook_ids")(tx, webhook_ids)  # noqa: B009
            marks.append(time.thread_time())
            inserted = batch_ingest.insert_new_chunks(tx, batch)
            marks.append(time.thread_time())
            if record_deliveries := getattr(batch_ingest, "record_deliveries", None):  # older trees
                record_deliveries(tx, batch)  # newer ones record them in the chunks' insert
            marks.append(time.thread_time())
        marks.append(time.thread_time())
        walls.append(time.perf_counter() - wall0)
        if len(inserted) != BATCH:
            raise RuntimeError(f"inserted {len(inserted)} of {BATCH}")
        samples.append([b - a for a, b in itertools.pairwise(marks)])
    engine.dispose()
    kept = samples[len(samples) // 10 :]  # the first tenth warms caches up
    result = {part: statistics.median(s[i] for s in kept) * 1e6 for i, part in enumerate(PARTS)}
    result["all"] = statistics.median(sum(s) for s in kept) * 1e6
    result["wall"] = statistics.median(walls[len(walls) // 10 :]) * 1e6
    return result


def _in_process(src: Path | None, database_url: str, rounds: int) -> dict[str, float]:
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = f"{src / 'core' / 'src'}{os.pathsep}{env.get('PYTHONPATH', '')}"
    done = subprocess.run(
        [sys.executable, "-m", "bench.group_commit_db", "--one", database_url, "--rounds", str(rounds)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.group_commit_db", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--rounds", type=int, default=500, help="batches per run")
    parser.add_argument("--runs", type=int, default=3, help="runs per tree, alternately")
    parser.add_argument("--also-src", type=Path, help="also measure this tree's batch_ingest, run by run")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a child: measure on this database, print JSON
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.one, args.rounds)))
        return 0
    trees: list[Path | None] = [args.also_src, None] if args.also_src else [None]
    results: dict[str, list[dict[str, float]]] = {}
    with embedded_postgres() as server:
        for _ in range(args.runs):
            for src in trees:
                with fresh_postgres_database(server) as url:
                    results.setdefault(src.name if src else "this tree", []).append(
                        _in_process(src, url, args.rounds)
                    )
    print(
        f"batches of {BATCH} new chunks, {args.rounds} per run, median thread CPU in microseconds per batch"
    )
    print(
        "| tree | run | "
        + " | ".join(PARTS)
        + " | all | per chunk | wall per batch (PostgreSQL's time too) |"
    )
    print("|---|---|" + "---|" * (len(PARTS) + 3))
    for name, runs in results.items():
        for i, one in enumerate(runs, 1):
            cells = " | ".join(f"{one[p]:.0f}" for p in [*PARTS, "all"])
            print(f"| {name} | {i} | {cells} | {one['all'] / BATCH:.1f} | {one['wall']:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
