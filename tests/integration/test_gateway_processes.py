"""``audioflow api --workers N`` (``AUDIOFLOW_API_WORKERS``): N processes serve one port, whose connections
the parent accepts and hands to the process holding the fewest. SIGTERM stops them all; one that dies
takes the others down and the gateway exits 1, so whatever runs it restarts it whole rather than serving
on with fewer processes than asked; if the parent dies, its processes stop too."""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Callable

import httpx
import psutil  # type: ignore[import-untyped]  # no stubs in the dev tools

from tests.factories import tone_pcm, wav_bytes
from tests.integration.stack import Stack
from tests.services import eventually


def _processes(gateway: Stack, count: int) -> tuple[psutil.Process, list[psutil.Process]]:
    parent = psutil.Process(gateway.procs["api"][0].pid)

    def serving() -> list[psutil.Process] | None:
        children: list[psutil.Process] = parent.children()
        if len(children) != count or not _answers(gateway):
            return None
        return children

    return parent, eventually(f"{count} gateway processes serving", serving, within=30, logs=gateway.logs)


def _answers(gateway: Stack) -> bool:
    try:
        return httpx.get(f"{gateway.base_url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _established(process: psutil.Process, port: int) -> int:
    return sum(
        1 for c in process.net_connections("tcp") if c.status == "ESTABLISHED" and c.laddr.port == port
    )


def _held(process: psutil.Process, port: int) -> int:
    """Connections to ``port`` the process still holds open, those its client closed included (CLOSE_WAIT):
    a process reports a connection gone (its load, which the parent hands out by) before it closes it, so
    one not listed here is out of the load it reported."""
    return sum(1 for c in process.net_connections("tcp") if c.status != "LISTEN" and c.laddr.port == port)


def test_processes_share_the_port_and_stop_together(make: Callable[..., Stack]) -> None:
    gateway = make(AUDIOFLOW_API_WORKERS="2")
    gateway.start_api()
    parent, children = _processes(gateway, 2)
    chunk = wav_bytes(tone_pcm(0.5))
    for seq in range(10):
        assert gateway.put_chunk("two-processes", seq, chunk).status_code == 201
    assert gateway.meeting("two-processes")["chunks_received"] == 10
    parent.send_signal(signal.SIGTERM)
    assert gateway.procs["api"][0].wait(30) == 0
    assert not any(child.is_running() and child.status() != psutil.STATUS_ZOMBIE for child in children)


def test_a_process_that_dies_stops_the_gateway(make: Callable[..., Stack]) -> None:
    gateway = make(AUDIOFLOW_API_WORKERS="2")
    gateway.start_api()
    _, children = _processes(gateway, 2)
    children[0].kill()
    assert gateway.procs["api"][0].wait(30) == 1
    assert psutil.wait_procs(children[1:], timeout=10)[1] == []
    assert "exited" in gateway.logs() and "stopping the others" in gateway.logs()


def test_connections_are_shared_out_evenly(make: Callable[..., Stack]) -> None:
    """64 connections opened at once end 32 and 32: not nearly all with whichever process was idlest (62 of
    64 on one shared socket), nor as a hash of their addresses falls (36 and 28 with SO_REUSEPORT). After
    half of one process's connections close, the next ones go to that process."""
    gateway = make(AUDIOFLOW_API_WORKERS="2")
    gateway.start_api()
    parent, children = _processes(gateway, 2)
    opened: list[socket.socket] = []
    try:

        def shares() -> list[int] | None:
            counts = [_held(child, gateway.port) for child in children]
            return counts if sum(counts) == len(opened) else None

        eventually("the readiness probes' connections closed", shares, within=10, logs=gateway.logs)

        opened += [socket.create_connection(("127.0.0.1", gateway.port), timeout=10) for _ in range(64)]
        assert eventually("all 64 connections taken in", shares, within=10, logs=gateway.logs) == [32, 32]
        assert _established(parent, gateway.port) == 0  # the parent keeps none of them

        # Close 16 of the first process's connections (found by their client ports), then open 16 more.
        ports = {c.raddr.port for c in children[0].net_connections("tcp") if c.laddr.port == gateway.port}
        closing = [conn for conn in opened if conn.getsockname()[1] in ports][:16]
        for conn in closing:
            conn.close()
            opened.remove(conn)
        eventually("16 closed", lambda: shares() == [16, 32] or None, within=10, logs=gateway.logs)
        time.sleep(0.3)  # past one tick of the process (0.1 s), the latest its count can follow a close
        opened += [socket.create_connection(("127.0.0.1", gateway.port), timeout=10) for _ in range(16)]
        assert eventually("16 more taken in", shares, within=10, logs=gateway.logs) == [32, 32]
    finally:
        for conn in opened:
            conn.close()


def test_the_processes_stop_when_the_parent_is_killed(make: Callable[..., Stack]) -> None:
    gateway = make(AUDIOFLOW_API_WORKERS="2")
    gateway.start_api()
    parent, children = _processes(gateway, 2)
    parent.kill()
    assert psutil.wait_procs(children, timeout=15)[1] == []
    assert "the parent process is gone" in gateway.logs()
