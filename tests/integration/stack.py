"""A running audioflow: the gateway and workers as real processes on real Redis and a real database."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from websockets.sync.client import connect

from audioflow.core.db.migrate import upgrade
from audioflow.core.signing import generate_secret, sign_chunk
from audioflow.workers.simulate import Delivery, send
from tests.services import free_port, wait_for_port

T = TypeVar("T")


@dataclass
class Stack:
    env: dict[str, str]
    workdir: Path
    port: int
    token: str
    secret: str
    procs: dict[str, list[subprocess.Popen[bytes]]] = field(default_factory=dict)
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.base_url, timeout=30)

    @property
    def admin_token(self) -> str:
        """Creates, ends and deletes meetings; ``token`` only reads."""
        return self.env["AUDIOFLOW_ADMIN_TOKEN"]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # processes -----------------------------------------------------------------------------------
    def _spawn(
        self, name: str, args: list[str], extra_env: dict[str, str] | None = None, wrapper: Sequence[str] = ()
    ) -> subprocess.Popen[bytes]:
        index = len(self.procs.get(name, []))
        with (self.workdir / f"{name}-{index}.log").open("wb") as log:  # the child keeps its own handle
            proc = subprocess.Popen(
                [*wrapper, sys.executable, "-m", "audioflow.cli", *args],
                env={**self.env, **(extra_env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.procs.setdefault(name, []).append(proc)
        return proc

    def start_api(self, wrapper: Sequence[str] = ()) -> subprocess.Popen[bytes]:
        """The gateway; ``wrapper`` is a command that runs it (say, in a namespace of its own)."""
        proc = self._spawn("api", ["api", "--port", str(self.port)], wrapper=wrapper)
        wait_for_port(self.port, timeout=30)
        return proc

    def start_worker(self, kind: str, extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        return self._spawn(kind, ["worker", kind], extra_env)

    def stop(self) -> None:
        procs = [p for group in self.procs.values() for p in group if p.poll() is None]
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.client.close()

    def logs(self) -> str:
        return "\n".join(
            f"==== {p.name}\n{p.read_text(errors='replace')[-4000:]}"
            for p in sorted(self.workdir.glob("*.log"))
        )

    # HTTP ------------------------------------------------------------------------------------------
    def auth(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}

    def admin(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.admin_token}"}

    def put_chunk(self, meeting_id: str, seq: int | str, body: bytes, **headers: str) -> httpx.Response:
        signed = {"content-type": "audio/wav", **sign_chunk(self.secret, meeting_id, seq, body).as_dict()}
        signed.update({k.replace("_", "-"): v for k, v in headers.items()})
        return self.client.put(f"/v1/meetings/{meeting_id}/chunks/{seq}", content=body, headers=signed)

    def send(self, meeting_id: str, seq: int, body: bytes) -> int:
        """Upload as the simulator does (signed, retried on 503); returns the final status."""
        return send(self.client, self.base_url, self.secret, Delivery(meeting_id, seq, body))

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.get(path, headers={**self.auth(), **kwargs.pop("headers", {})}, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        """A write (create or end a meeting): with the admin token."""
        return self.client.post(path, headers={**self.admin(), **kwargs.pop("headers", {})}, **kwargs)

    def delete(self, path: str) -> httpx.Response:
        return self.client.delete(path, headers=self.admin())

    def meeting(self, meeting_id: str) -> dict[str, Any]:
        response = self.get(f"/v1/meetings/{meeting_id}")
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def wait_until(
        self, what: str, check: Callable[[], T | None], timeout: float = 120.0, every: float = 0.2
    ) -> T:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(every)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{self.logs()}")

    def wait_completed(self, meeting_id: str, timeout: float = 180.0) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            status = self.meeting(meeting_id)
            return status if status["phase"] in ("completed", "failed") else None

        return self.wait_until(f"meeting {meeting_id} to complete", done, timeout)

    # events ----------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def events(self, meeting_id: str, since: str | None = None) -> Iterator[Any]:
        query = f"?token={self.token}" + (f"&since={since}" if since else "")
        with connect(f"ws://127.0.0.1:{self.port}/v1/meetings/{meeting_id}/events{query}") as ws:
            yield ws

    def read_events(
        self, ws: Any, until: Callable[[list[dict[str, Any]]], bool], timeout: float = 120.0
    ) -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while not until(got):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out reading events; got {len(got)}: {got[-5:]}\n{self.logs()}")
            with contextlib.suppress(TimeoutError):
                got.append(json.loads(ws.recv(timeout=min(remaining, 1.0))))
        return got


FAST_ENV = {
    "AUDIOFLOW_LEASE_MS": "1500",
    "AUDIOFLOW_CLAIM_INTERVAL_S": "0.5",
    "AUDIOFLOW_BLOCK_MS": "200",
    "AUDIOFLOW_MAX_DELIVERIES": "5",
    "AUDIOFLOW_GAP_TIMEOUT_S": "30",
    "AUDIOFLOW_FSYNC": "false",
    "AUDIOFLOW_LOG_LEVEL": "INFO",
}


def make_stack(workdir: Path, redis_url: str, database_url: str, prefix: str, **env: str) -> Stack:
    data_dir = workdir / "data"
    data_dir.mkdir()
    upgrade(database_url)
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIOFLOW_")}
    stack_env = {
        **base_env,
        "REDIS_URL": redis_url,
        "DATABASE_URL": database_url,
        "AUDIOFLOW_DATA_DIR": str(data_dir),
        "AUDIOFLOW_REDIS_PREFIX": prefix,
        "AUDIOFLOW_WEBHOOK_SECRET": generate_secret(),
        "AUDIOFLOW_API_TOKEN": "test-token-" + os.urandom(8).hex(),
        "AUDIOFLOW_ADMIN_TOKEN": "test-admin-" + os.urandom(8).hex(),
        **FAST_ENV,
        **env,
    }
    return Stack(
        stack_env,
        workdir,
        free_port(),
        stack_env["AUDIOFLOW_API_TOKEN"],
        stack_env["AUDIOFLOW_WEBHOOK_SECRET"],
    )
