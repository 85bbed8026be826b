"""What a recorded run (benchmarks, chaos) says about where it ran: the machine, the versions, the time."""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

import psutil  # type: ignore[import-untyped]  # no stubs in the dev tools
import psycopg
import redis

REPO = Path(__file__).resolve().parents[1]


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine() -> dict[str, str]:
    memory = psutil.virtual_memory().total
    return {
        "CPU": _cpu_model(),
        "cores (logical)": str(psutil.cpu_count(logical=True)),
        "cores usable by this process": str(len(os.sched_getaffinity(0))),
        "memory": f"{memory / 2**30:.1f} GiB",
        "kernel": f"{platform.system()} {platform.release()}",
        "load average at start (1/5/15 min)": " / ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def _git(*args: str) -> str:
    git = shutil.which("git")
    if git is None:
        return "unknown (no git)"
    done = subprocess.run([git, *args], cwd=REPO, capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def _package(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _server_versions(redis_url: str, postgres_url: str) -> tuple[str, str]:
    try:
        client = redis.Redis.from_url(redis_url, decode_responses=True, socket_connect_timeout=3)
        try:
            redis_version = str(client.info("server").get("redis_version", "unknown"))
        finally:
            client.close()
    except redis.RedisError as exc:
        redis_version = f"unknown ({exc})"
    try:
        with psycopg.connect(postgres_url, connect_timeout=3) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        postgres_version = str(row[0]) if row else "unknown"
    except psycopg.Error as exc:
        postgres_version = f"unknown ({str(exc).splitlines()[0]})"
    return redis_version, postgres_version


def versions(redis_url: str, postgres_url: str) -> dict[str, str]:
    redis_version, postgres_version = _server_versions(redis_url, postgres_url)
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    commit = _git("rev-parse", "--short=12", "HEAD")
    return {
        "audioflow (git)": commit + (" (with uncommitted changes)" if dirty else ""),
        "Python": platform.python_version(),
        "redis-server": redis_version,
        "PostgreSQL": postgres_version,
        "pocketsphinx": _package("pocketsphinx"),
        "SQLAlchemy / psycopg": f"{_package('sqlalchemy')} / {_package('psycopg')}",
        "FastAPI / uvicorn": f"{_package('fastapi')} / {_package('uvicorn')}",
        "redis-py / httpx": f"{_package('redis')} / {_package('httpx')}",
    }


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
