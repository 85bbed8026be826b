"""The ``audioflow`` command. Each subcommand imports its member lazily, so an image that installs
only one member (say the worker) never loads another's dependencies (say FastAPI)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from audioflow.core.settings import Settings


def _settings() -> Settings:
    from audioflow.core.settings import load_settings

    return load_settings()


def cmd_api(args: argparse.Namespace) -> int:
    from audioflow.api.server import serve
    from audioflow.core.logs import setup_logging

    settings = _settings()
    setup_logging("api", fmt=settings.log_format, level=settings.log_level)
    serve(settings, args.host, args.port, args.workers or settings.api_workers)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from audioflow.workers.runner import run_worker

    run_worker(args.kind, _settings())
    return 0


def cmd_operator(args: argparse.Namespace) -> int:
    import asyncio

    from audioflow.core.logs import setup_logging
    from audioflow.core.metrics import serve_metrics
    from audioflow.operator.main import run

    settings = _settings()
    setup_logging("operator", fmt=settings.log_format, level=settings.log_level)
    serve_metrics(settings.metrics_port)
    port = settings.health_port
    asyncio.run(run(settings, liveness_endpoint=f"http://0.0.0.0:{port}/healthz" if port else None))
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from audioflow.core.db.migrate import upgrade

    settings = _settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.effective_database_url, args.revision)
    print(f"audioflow: database at revision {args.revision}", file=sys.stderr)
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from audioflow.workers.simulate import run_simulation

    return run_simulation(args, _settings())


def add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="the gateway's base URL")
    parser.add_argument(
        "--meeting", help="meeting id (default: a generated one); with --meetings M, a prefix"
    )
    parser.add_argument("--chunks", type=int, help="number of chunks (default: the whole speech fixture)")
    parser.add_argument("--chunk-seconds", type=float, default=5.0, help="length of each chunk")
    parser.add_argument("--shuffle", action="store_true", help="send in random order")
    parser.add_argument("--duplicates", type=int, default=0, metavar="K", help="send K random chunks twice")
    parser.add_argument(
        "--drop", type=int, nargs="*", default=[], metavar="SEQ", help="never send these seqs"
    )
    parser.add_argument("--meetings", type=int, default=1, metavar="M", help="simulate M meetings at once")
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        metavar="R",
        help="chunks per second over all meetings (0: as fast as possible)",
    )
    parser.add_argument(
        "--realtime", action="store_true", help="pace each meeting at one chunk per chunk length"
    )
    parser.add_argument(
        "--end", action="store_true", help="end the meetings afterwards (needs AUDIOFLOW_ADMIN_TOKEN)"
    )
    parser.add_argument("--seed", type=int, help="random seed, for a repeatable run")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")


def cmd_up(args: argparse.Namespace) -> int:
    from audioflow.cli.up import run_up

    return run_up(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="audioflow", description="Live meeting audio → ordered recording + transcript"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run the whole system on this machine (embedded Redis and SQLite)")
    up.add_argument("--demo", action="store_true", help="also simulate a meeting")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=8080)
    up.add_argument("--data-dir", default=".audioflow")
    up.set_defaults(func=cmd_up)

    api = sub.add_parser("api", help="run the gateway (FastAPI)")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8080)
    api.add_argument(
        "--workers", type=int, help="gateway processes sharing the port (default: AUDIOFLOW_API_WORKERS, 1)"
    )
    api.set_defaults(func=cmd_api)

    worker = sub.add_parser("worker", help="run a worker")
    worker.add_argument("kind", choices=["processing", "concat"])
    worker.set_defaults(func=cmd_worker)

    operator = sub.add_parser(
        "operator",
        help="run the Kubernetes operator (Meetings, worker autoscaling); "
        "liveness on AUDIOFLOW_HEALTH_PORT /healthz, metrics on AUDIOFLOW_METRICS_PORT",
    )
    operator.set_defaults(func=cmd_operator)

    migrate = sub.add_parser("migrate", help="bring the database schema up to date")
    migrate.add_argument("--revision", default="head")
    migrate.set_defaults(func=cmd_migrate)

    simulate = sub.add_parser("simulate", help="fake-zoom: send real speech as signed WAV chunks")
    add_simulate_arguments(simulate)
    simulate.set_defaults(func=cmd_simulate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
