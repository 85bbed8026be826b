"""Bounded load on a real gateway on 127.0.0.1: many slow or idle clients at once, each test stopping by
itself. The gateway's memory stays bounded, refusals are clear (the error envelope, Retry-After), and
health and honest clients are answered meanwhile. SQLite only: the database is not what is loaded."""

from __future__ import annotations

import resource
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from audioflow.core.signing import sign
from tests.attack.load import MIB, Answer, Probe, slow_bodies, slow_headers
from tests.integration.stack import Stack


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'audioflow.db'}"


def _forged_signature(secret: str) -> dict[str, str]:
    """Well-formed signature headers with a fresh timestamp whose signature cannot match (it is over
    other bytes): what an attacker without the secret can send."""
    return {**sign(secret, b"something else").as_dict()}


def _refused(answers: list[Answer | None], status: int, code: str) -> list[Answer]:
    return [a for a in answers if a is not None and a.status == status and a.code() == code]


def test_slow_bodies_are_refused_before_the_body_capped_and_spooled(make: Callable[..., Stack]) -> None:
    """Issue 13, row 1: 60 connections declaring 32 MiB bodies took the gateway from 168 MiB to 2.1 GiB."""
    in_flight = 8
    stack = make(AUDIOFLOW_MAX_UPLOADS_IN_FLIGHT=str(in_flight), AUDIOFLOW_BODY_TIMEOUT_S="20")
    stack.start_api()
    pid = stack.procs["api"][0].pid
    with Probe(stack.port, pid) as probe:
        # No signature headers at all: refused before a byte of the body is read.
        with slow_bodies(stack.port, 30, declared=32 * MIB, sent=4 * MIB, headers={}) as unsigned:
            pass
        # Headers that look signed: at most `in_flight` bodies are taken (on disk, not in memory).
        forged = _forged_signature(stack.secret)
        with slow_bodies(stack.port, 30, declared=32 * MIB, sent=4 * MIB, headers=forged) as signed:
            time.sleep(1.0)  # the held bodies are in flight while the probe samples
    assert len(_refused(unsigned, 401, "missing_signature")) == 30, unsigned
    busy = _refused(signed, 503, "uploads_busy")
    assert len(busy) >= 30 - in_flight, signed
    assert all(a.headers.get("retry-after") for a in busy)
    assert b"AUDIOFLOW_MAX_UPLOADS_IN_FLIGHT" in busy[0].body
    assert not probe.failures, probe.failures
    # 60 x 4 MiB were sent: buffered in memory that is 240 MiB; spooled, a few MiB.
    assert probe.rss_growth < 64 * MIB, probe.summary()
    spool = Path(stack.env["AUDIOFLOW_DATA_DIR"]) / ".incoming"
    assert not list(spool.glob("*")) if spool.exists() else True, "a spooled body was left behind"


def test_slow_loris_heads_are_cut_off_and_health_is_answered(make: Callable[..., Stack]) -> None:
    """Issue 13, row 2: about 1,030 connections trickling their heads made every request fail. Here the
    gateway may have 256 open files (as under a default ulimit of 1024, scaled down) and 300 connections
    trickle a head; it keeps at most AUDIOFLOW_MAX_CONNECTIONS, cuts heads off at the deadline, and
    answers /healthz throughout."""
    stack = make(AUDIOFLOW_MAX_CONNECTIONS="128", AUDIOFLOW_HEADER_TIMEOUT_S="3")
    stack.start_api()
    pid = stack.procs["api"][0].pid
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (256, 256))
    with slow_headers(stack.port, 300, byte_every=0.5) as trickling, Probe(stack.port, pid) as probe:
        time.sleep(6.0)  # two head deadlines
        still_open = len(trickling)
        # An honest client that sends its head at once is answered, on a connection of its own.
        with socket.create_connection(("127.0.0.1", stack.port), timeout=10) as honest:
            honest.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert honest.recv(64).startswith(b"HTTP/1.1 200")
    assert not probe.failures, probe.failures[:5]
    assert probe.latencies["/healthz"], "/healthz was never answered"
    assert still_open == 0, f"{still_open} trickling connections outlived the head deadline"
