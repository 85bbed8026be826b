"""`python -m tests.chaos`: the full chaos run (`make chaos`); records its result in docs/chaos.md.

Uses the Redis and PostgreSQL named by REDIS_URL and DATABASE_URL when they are local and answer, else
starts embedded ones; either way the run gets a fresh database and a Redis key prefix of its own. Exits 1
when any check failed (the page is written either way: it records the last run).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from tests import services
from tests.chaos.controller import KINDS, ChaosConfig, ChaosResult, run_chaos
from tests.machine import machine, versions

ROOT = Path(__file__).resolve().parents[2]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    default = ChaosConfig()
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--meetings", type=int, default=default.meetings)
    parser.add_argument("--chunks", type=int, default=default.chunks, help="per meeting")
    parser.add_argument("--chunk-seconds", type=float, default=default.chunk_seconds)
    parser.add_argument("--kill-every", type=float, default=default.kill_every_s, help="seconds")
    parser.add_argument("--seed", type=int, default=default.seed)
    parser.add_argument("--processing", type=int, default=default.processing_workers)
    parser.add_argument("--concat", type=int, default=default.concat_workers)
    parser.add_argument("--duplicates", type=int, help="per meeting (default: a tenth of --chunks)")
    parser.add_argument(
        "--rate", type=float, default=default.upload_rate, help="uploads/s per meeting, 0 = unpaced"
    )
    parser.add_argument(
        "--chaos-max", type=float, default=default.chaos_max_s, help="kill for at most this many seconds"
    )
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "chaos.md", help="page to write")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs) after a pass")
    return parser.parse_args(argv)


def config_of(args: argparse.Namespace) -> ChaosConfig:
    return ChaosConfig(
        meetings=args.meetings,
        chunks=args.chunks,
        chunk_seconds=args.chunk_seconds,
        kill_every_s=args.kill_every,
        seed=args.seed,
        processing_workers=args.processing,
        concat_workers=args.concat,
        duplicates=args.chunks // 10 if args.duplicates is None else args.duplicates,
        upload_rate=args.rate,
        chaos_max_s=args.chaos_max,
    )


def render(
    result: ChaosResult, command: str, info: dict[str, str], when: datetime, load: tuple[str, str]
) -> str:
    config = result.config
    outcome = "**PASSED**" if result.passed else "**FAILED**"
    passed = sum(check.passed for check in result.checks)
    lines = [
        "# Chaos run",
        "",
        "Written by the last full chaos run, `make chaos` (`uv run python -m tests.chaos`); do not edit.",
        "",
        "Meetings are uploaded concurrently to a real gateway, shuffled and with duplicates, while a",
        "controller picks a random live worker process (processing or concat) every "
        f"{config.kill_every_s:g} s,",
        "SIGKILLs it and at once starts a replacement of the same kind (a pick that has not been",
        "consuming for one interval yet is spared: that tick is skipped). Killing goes on until every",
        "chunk is sent and all work is done; after a quiet period the meetings are ended and the end",
        "state is checked. Seqs are never bridged with silence (the gap timeout is a day), so every",
        "recording must be exactly its chunks' PCM in seq order. The code is",
        "`tests/chaos/controller.py`; a short variant (3 x 40 chunks) runs in the test suite",
        "(`tests/chaos/test_chaos.py`).",
        "",
        f"## Last run: {outcome} ({passed} of {len(result.checks)} checks)",
        "",
        f"- Date: {when:%Y-%m-%d %H:%M} UTC",
        f"- Command: `{command}`",
        f"- Wall time: {result.wall_s:.0f} s",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in info.items()),
        f"| Load average (1 min) at start / end | {load[0]} / {load[1]} (the machine may be shared) |",
        "",
        "## Configuration",
        "",
        "| | |",
        "|---|---|",
        f"| Meetings x chunks | {config.meetings} x {config.chunks} of {config.chunk_seconds:g} s "
        "(real speech, the bundled fixture cut and cycled) |",
        f"| Duplicates | {config.duplicates} per meeting, uploads shuffled per meeting |",
        f"| Upload rate | {config.upload_rate:g} per second per meeting (0 = unpaced) |",
        f"| Workers | {config.processing_workers} processing, {config.concat_workers} concat |",
        f"| Kills | every {config.kill_every_s:g} s, a random live worker, spared if consuming for "
        "less than that |",
        f"| Lease / max deliveries | {config.lease_ms} ms / {config.max_deliveries} (a ceiling random "
        "kills do not reach: see the most deliveries of one entry below) |",
        f"| Quiet period before the end | {config.quiet_s:g} s |",
        f"| Seed | {config.seed} |",
        "",
        "## Figures",
        "",
        "| | |",
        "|---|---|",
        f"| Chunks sent | {result.chunks_sent} + {result.duplicates} duplicates = {result.uploads} uploads |",
        f"| HTTP statuses | {', '.join(f'{n} x {s}' for s, n in sorted(result.statuses.items()))} |",
        f"| SIGKILLs | {sum(result.kills.values())}: "
        + ", ".join(f"{kind} {result.kills[kind]}" for kind in KINDS)
        + " |",
        f"| Kill ticks skipped (the pick was still starting) | {result.skipped_ticks} |",
        f"| Worker processes started | {sum(result.started.values())}: "
        + ", ".join(f"{kind} {result.started[kind]}" for kind in KINDS)
        + " |",
        f"| Entries taken over after a kill (sampled, at least) | {result.takeovers_after_kill} |",
        f"| Entries taken over from a live worker (lease ran out) | {result.takeovers_from_live} |",
        f"| Most deliveries of one entry | {result.max_deliveries_seen} |",
        f"| Recordings repaired after a torn append | {result.recoveries} |",
        f"| Handler errors logged | {result.handler_errors} |",
        f"| Sending took | {result.send_s:.1f} s |",
        f"| Kills stopped after | {result.work_s:.1f} s, "
        + (
            "when all work was done |"
            if result.done_under_chaos
            else "at the cap, before all work was done |"
        ),
        "",
        "## Checks",
        "",
        "| Check | Result |",
        "|---|---|",
        *(
            f"| {check.name} | {'ok' if check.passed else 'FAILED: ' + _cell(check.detail)} |"
            for check in result.checks
        ),
        "",
    ]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")[:300]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = config_of(args)
    command = "python -m tests.chaos " + " ".join(
        f"--{name} {value}"
        for name, value in (
            ("meetings", config.meetings),
            ("chunks", config.chunks),
            ("chunk-seconds", f"{config.chunk_seconds:g}"),
            ("kill-every", f"{config.kill_every_s:g}"),
            ("seed", config.seed),
            ("processing", config.processing_workers),
            ("concat", config.concat_workers),
            ("duplicates", config.duplicates),
            ("rate", f"{config.upload_rate:g}"),
        )
    )
    began = time.monotonic()

    def progress(message: str) -> None:
        print(f"chaos [{time.monotonic() - began:6.1f} s] {message}", flush=True)

    when = datetime.now(UTC)
    load_start = f"{os.getloadavg()[0]:.2f}"
    workdir = Path(tempfile.mkdtemp(prefix="af-chaos-"))
    prefix = services.redis_prefix()
    with services.local_or_embedded() as (redis_url, postgres_url, notes):
        for note in notes:
            progress(note)
        info = {**machine(), **versions(redis_url, postgres_url)}
        try:
            with services.fresh_postgres_database(postgres_url) as database_url:
                result = run_chaos(
                    config,
                    workdir=workdir,
                    redis_url=redis_url,
                    database_url=database_url,
                    prefix=prefix,
                    progress=progress,
                )
        finally:
            services.delete_prefix(redis_url, prefix)
    load = (load_start, f"{os.getloadavg()[0]:.2f}")
    print(result.summary())
    args.doc.parent.mkdir(parents=True, exist_ok=True)
    args.doc.write_text(render(result, command, info, when, load))
    print(f"chaos: wrote {args.doc}")
    if result.passed and not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"chaos: worker logs kept in {workdir}")
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
