"""Hostile clients for a gateway on 127.0.0.1, and a probe that watches it meanwhile.

Shared by the bounded regression tests (``tests/integration/test_overload.py``) and by the short attack
run (``make attack``, ``python -m tests.attack``). Every attack has a fixed number of connections and
stops by itself; nothing here talks to anything but 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

HOST = "127.0.0.1"
MIB = 1024 * 1024


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def code(self) -> str | None:
        """The error envelope's code, if the body is one."""
        with contextlib.suppress(ValueError, KeyError, TypeError):
            return str(json.loads(self.body)["error"]["code"])
        return None


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (VmRSS)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def read_answer(sock: socket.socket, timeout: float) -> Answer | None:
    """The gateway's answer on ``sock`` if one arrives within ``timeout``, else None."""
    sock.settimeout(timeout)
    try:
        if not sock.recv(1, socket.MSG_PEEK):
            return None  # closed without an answer
        response = http.client.HTTPResponse(sock)
        response.begin()
        body = response.read() if response.status != 200 or response.length is not None else b""
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, body)
    except (OSError, http.client.HTTPException):
        return None


@dataclass
class Probe:
    """While it runs: the gateway's RSS peak and the latency of ``/healthz`` (and any extra paths),
    sampled every ``every`` seconds by a thread of its own."""

    port: int
    pid: int
    paths: Sequence[str] = ("/healthz",)
    headers: dict[str, str] = field(default_factory=dict)
    every: float = 0.25
    timeout: float = 10.0
    rss_before: int = 0
    rss_peak: int = 0
    latencies: dict[str, list[float]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Probe:
        self.rss_before = self.rss_peak = rss_bytes(self.pid)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        # A fresh connection each time: an honest client that arrives during the attack.
        while not self._stop.is_set():
            self.rss_peak = max(self.rss_peak, rss_bytes(self.pid))
            for path in self.paths:
                started = time.monotonic()
                try:
                    with httpx.Client(base_url=f"http://{HOST}:{self.port}", timeout=self.timeout) as client:
                        status = client.get(path, headers=self.headers).status_code
                except httpx.HTTPError as exc:
                    self.failures.append(f"{path}: {type(exc).__name__}")
                    continue
                if status != 200:
                    self.failures.append(f"{path}: {status}")
                    continue
                self.latencies.setdefault(path, []).append(time.monotonic() - started)
            self._stop.wait(self.every)

    @property
    def rss_growth(self) -> int:
        return self.rss_peak - self.rss_before

    def worst(self, path: str = "/healthz") -> float:
        return max(self.latencies.get(path, [float("inf")]))

    def summary(self) -> dict[str, Any]:
        return {
            "rss_before_mib": round(self.rss_before / MIB, 1),
            "rss_peak_mib": round(self.rss_peak / MIB, 1),
            "answered": {path: len(times) for path, times in self.latencies.items()},
            "worst_s": {path: round(max(times), 3) for path, times in self.latencies.items()},
            "failures": len(self.failures),
        }


def _head(method: str, path: str, port: int, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}:{port}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@contextlib.contextmanager
def slow_bodies(
    port: int, count: int, *, declared: int, sent: int, headers: dict[str, str], answer_within: float = 2.0
) -> Iterator[list[Answer | None]]:
    """``count`` concurrent chunk uploads that declare ``declared`` bytes, send ``sent`` of them and then
    stall. Yields each connection's early answer (None: still held by the gateway); the connections stay
    open until the block ends."""
    head = {"Content-Type": "audio/wav", "Content-Length": str(declared), **headers}
    piece = bytes(sent)
    socks: list[socket.socket] = []

    def one(index: int) -> Answer | None:
        sock = socket.create_connection((HOST, port), timeout=10)
        socks.append(sock)
        try:
            sock.sendall(_head("PUT", f"/v1/meetings/attack-{index}/chunks/0", port, head))
            sock.sendall(piece)
        except OSError:
            pass  # refused and closed before the body: the answer is waiting to be read
        return read_answer(sock, answer_within)

    try:
        with ThreadPoolExecutor(count) as pool:
            yield list(pool.map(one, range(count)))
    finally:
        for sock in socks:
            sock.close()


@contextlib.contextmanager
def slow_headers(port: int, count: int, *, byte_every: float = 1.0) -> Iterator[list[socket.socket]]:
    """``count`` connections that trickle a request head one byte every ``byte_every`` seconds and never
    finish it. Yields the sockets still open (the gateway may close some)."""
    head = _head("GET", "/healthz", port, {"X-Padding": "a" * 4000})
    socks: list[socket.socket] = []
    for _ in range(count):
        with contextlib.suppress(OSError):
            sock = socket.create_connection((HOST, port), timeout=5)
            sock.setblocking(False)
            socks.append(sock)
    stop = threading.Event()

    def trickle() -> None:
        position = 0
        while not stop.is_set() and position < len(head):
            for sock in list(socks):
                try:
                    sock.send(head[position : position + 1])
                except BlockingIOError:
                    pass
                except OSError:  # closed by the gateway
                    socks.remove(sock)
                    sock.close()
            position += 1
            stop.wait(byte_every)

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        yield socks
    finally:
        stop.set()
        thread.join()
        for sock in socks:
            sock.close()


@contextlib.contextmanager
def idle_followers(port: int, path: str, count: int, token: str) -> Iterator[list[Answer | None]]:
    """``count`` ``GET path`` followers (``live.wav``) that read the answer's head and then never read
    again. Yields each one's answer (None: no answer)."""
    head = _head("GET", path, port, {"Authorization": f"Bearer {token}"})
    socks: list[socket.socket] = []

    def one(_: int) -> Answer | None:
        sock = socket.create_connection((HOST, port), timeout=10)
        socks.append(sock)
        sock.sendall(head)
        return read_answer(sock, 10.0)

    try:
        with ThreadPoolExecutor(min(count, 64)) as pool:
            yield list(pool.map(one, range(count)))
    finally:
        for sock in socks:
            sock.close()


@contextlib.contextmanager
def event_followers(port: int, path: str, count: int, token: str) -> Iterator[list[str]]:
    """``count`` WebSockets open on ``path`` at once. Yields each one's state: ``open``, or how it was
    refused or closed (``close <code>``, ``refused <status>``, the error's name)."""
    from websockets.exceptions import ConnectionClosed, InvalidStatus
    from websockets.sync.client import ClientConnection, connect

    sockets: list[ClientConnection] = []

    def one(_: int) -> str:
        try:
            ws = connect(f"ws://{HOST}:{port}{path}?token={token}", open_timeout=10)
        except InvalidStatus as exc:
            return f"refused {exc.response.status_code}"
        except OSError as exc:
            return type(exc).__name__
        sockets.append(ws)
        try:
            first = ws.recv(timeout=0.5)  # a refusal arrives at once (an error, then a close)
        except TimeoutError:
            return "open"
        except ConnectionClosed as exc:
            return f"close {exc.rcvd.code if exc.rcvd else 'none'}"
        with contextlib.suppress(ValueError, KeyError, TypeError):
            return f"error {json.loads(first)['error']['code']}"
        return "open"

    try:
        with ThreadPoolExecutor(min(count, 64)) as pool:
            yield list(pool.map(one, range(count)))
    finally:
        for ws in sockets:
            ws.close()
