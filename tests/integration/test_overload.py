"""Bounded load on a real gateway on 127.0.0.1: many slow or idle clients at once, each test stopping by
itself. The gateway's memory stays bounded, refusals are clear (the error envelope, Retry-After), and
health and honest clients are answered meanwhile. SQLite only: the database is not what is loaded."""

from __future__ import annotations

import functools
import os
import resource
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from audioflow.core.signing import sign
from tests.attack.load import MIB, Answer, Probe, idle_followers, slow_bodies, slow_headers
from tests.factories import SPEECH_FORMAT, tone_pcm, wav_bytes
from tests.integration.stack import Stack


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'audioflow.db'}"


def _forged_signature(secret: str) -> dict[str, str]:
    """Well-formed signature headers with a fresh timestamp whose signature cannot match (it is over
    other bytes): what an attacker without the secret can send."""
    return {**sign(secret, b"something else").as_dict()}


def chunk_wav() -> bytes:
    return wav_bytes(tone_pcm(1.0, SPEECH_FORMAT, seed=0), SPEECH_FORMAT)


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
    # An honest upload afterwards, large enough to be spooled to disk, is stored byte for byte.
    big = wav_bytes(tone_pcm(60.0, SPEECH_FORMAT, seed=1), SPEECH_FORMAT)  # 1.9 MB
    assert stack.put_chunk("honest", 0, big).status_code == 201
    stored = Path(stack.env["AUDIOFLOW_DATA_DIR"]) / "meetings" / "honest" / "chunks" / "00000000.wav"
    assert stored.read_bytes() == big
    assert stack.put_chunk("honest", 0, big).json()["status"] == "duplicate"
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
    # On a kept-alive connection the next head has the same deadline from the previous answer.
    with socket.create_connection(("127.0.0.1", stack.port), timeout=10) as kept:
        kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        first = b""
        while not first.endswith(b'{"status":"ok"}'):
            first += kept.recv(4096)
        assert first.startswith(b"HTTP/1.1 200")
        answer = b""
        for byte in b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"a" * 100:
            try:
                kept.sendall(bytes([byte]))
                time.sleep(0.25)
                kept.setblocking(False)
                answer += kept.recv(4096)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                break
            finally:
                kept.setblocking(True)
            if answer:
                break
    assert answer.startswith(b"HTTP/1.1 408"), answer


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def test_idle_live_followers_are_bounded_cheap_and_timed_out(make: Callable[..., Stack]) -> None:
    """Issue 13, row 11: 1,500 idle live.wav followers took the gateway to 112 % CPU and a meeting's
    status to 10.5 s. Followers are capped in all and per meeting (429 too_many_listeners with
    Retry-After), share one watcher per meeting, and end after the idle timeout."""
    stack = make(
        AUDIOFLOW_MAX_LIVE_FOLLOWERS="120",
        AUDIOFLOW_MAX_LIVE_FOLLOWERS_PER_MEETING="100",
        AUDIOFLOW_LIVE_IDLE_TIMEOUT_S="8",
    )
    stack.start_api()
    stack.start_worker("concat")
    for meeting in ("f1", "f2"):
        assert stack.put_chunk(meeting, 0, chunk_wav()).status_code == 201
    recorded = functools.partial(_recorded, stack, ("f1", "f2"))
    stack.wait_until("both recordings", recorded)
    pid = stack.procs["api"][0].pid
    live = "/v1/meetings/{}/live.wav"
    with (
        idle_followers(stack.port, live.format("f1"), 150, stack.token) as f1,
        idle_followers(stack.port, live.format("f2"), 30, stack.token) as f2,
    ):
        assert sum(a is not None and a.status == 200 for a in f1) == 100, f1
        per_meeting = _refused(f1, 429, "too_many_listeners")
        assert len(per_meeting) == 50 and b"PER_MEETING" in per_meeting[0].body
        assert sum(a is not None and a.status == 200 for a in f2) == 20, f2
        overall = _refused(f2, 429, "too_many_listeners")
        assert len(overall) == 10 and b"(AUDIOFLOW_MAX_LIVE_FOLLOWERS)" in overall[0].body
        assert all(a.headers.get("retry-after") for a in per_meeting + overall)
        # 120 idle followers: their cost is one watcher per meeting, not a poll each.
        with Probe(stack.port, pid, paths=("/v1/meetings/f1",), headers=stack.auth()) as probe:
            cpu_before = _cpu_seconds(pid)
            time.sleep(4.0)
            cpu = _cpu_seconds(pid) - cpu_before
        assert not probe.failures, probe.failures[:5]
        assert cpu < 0.8, f"the gateway spent {cpu:.2f} s of CPU in 4 s on 120 idle followers"
        # After the idle timeout the followers have been let go: a new one is taken again.
        stack.wait_until(
            "the idle followers to be let go", lambda: _follows(stack, "f1"), timeout=30, every=1.0
        )


def _recorded(stack: Stack, meetings: tuple[str, ...]) -> bool:
    return all(stack.meeting(m)["concatenated_through"] == 0 for m in meetings)


def _follows(stack: Stack, meeting: str) -> bool:
    with stack.client.stream("GET", f"/v1/meetings/{meeting}/live.wav", headers=stack.auth()) as response:
        return response.status_code == 200
