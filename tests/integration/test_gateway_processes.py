"""``audioflow api --workers N`` (``AUDIOFLOW_API_WORKERS``): N processes accept on one port. SIGTERM stops
them all; one that dies takes the others down and the gateway exits 1, so whatever runs it restarts it
whole rather than serving on with fewer processes than asked."""

from __future__ import annotations

import signal
import socket
from collections.abc import Callable

import psutil  # type: ignore[import-untyped]  # no stubs in the dev tools

from tests.factories import tone_pcm, wav_bytes
from tests.integration.stack import Stack
from tests.services import eventually


def _processes(gateway: Stack, count: int) -> tuple[psutil.Process, list[psutil.Process]]:
    parent = psutil.Process(gateway.procs["api"][0].pid)

    def listening() -> list[psutil.Process] | None:
        children = parent.children()
        ports = [
            {c.laddr.port for c in child.net_connections("tcp") if c.status == "LISTEN"} for child in children
        ]
        return children if len(children) == count and all(gateway.port in p for p in ports) else None

    return parent, eventually(f"{count} gateway processes listening", listening, within=30, logs=gateway.logs)


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


def test_connections_are_spread_across_the_processes(make: Callable[..., Stack]) -> None:
    """Each process listens on a socket of its own (SO_REUSEPORT): 64 connections opened at once are
    shared out, not nearly all taken by whichever process was idlest (62 of 64 on one shared socket)."""
    gateway = make(AUDIOFLOW_API_WORKERS="2")
    gateway.start_api()
    _, children = _processes(gateway, 2)
    opened = [socket.create_connection(("127.0.0.1", gateway.port), timeout=10) for _ in range(64)]
    try:

        def shares() -> list[int] | None:
            counts = [
                sum(
                    1
                    for c in child.net_connections("tcp")
                    if c.status == "ESTABLISHED" and c.laddr.port == gateway.port
                )
                for child in children
            ]
            return counts if sum(counts) == len(opened) else None

        counts = eventually("all 64 connections accepted", shares, within=10, logs=gateway.logs)
        # The kernel picks by a hash of the addresses: fewer than 12 of 64 on one side is a 1 in 10^6 draw.
        assert min(counts) >= 12, counts
    finally:
        for conn in opened:
            conn.close()
