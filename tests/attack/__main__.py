"""`python -m tests.attack` (`make attack`): the load rows of the hardening issue against a local stack.

A gateway and a concat worker on 127.0.0.1, an embedded Redis of the run's own and SQLite, started under
a soft open-file limit of 1024 (a common default). Then, one after the other and each bounded in
connections and time: slow chunk bodies (row 1), slow-loris request heads (row 2), WebSockets on one
meeting (row 3), chunk URLs that trickle (row 7) and idle ``live.wav`` followers (row 11). Meanwhile a
probe asks ``/healthz`` (and a reader URL where it matters) every quarter second on fresh connections
and samples the gateway's RSS. What held is written between the markers in docs/reliability.md. Takes
about a minute and a half; exits 1 when something that must hold did not.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import re
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psutil  # type: ignore[import-untyped]  # no stubs in the dev tools

from audioflow.core.signing import sign
from tests import services
from tests.attack.load import (
    MIB,
    Answer,
    Probe,
    event_followers,
    idle_followers,
    slow_bodies,
    slow_headers,
)
from tests.factories import SPEECH_FORMAT, tone_pcm, wav_bytes
from tests.integration.stack import Stack, make_stack
from tests.integration.test_downloads import post_chunk_url, trickle_server
from tests.machine import machine

ROOT = Path(__file__).resolve().parents[2]
BEGIN, END = "<!-- attack:begin -->", "<!-- attack:end -->"


@dataclass
class Row:
    number: int
    attack: str
    held: bool
    measured: str


# The regression test that makes each attack, scaled down, on every CI run.
OVERLOAD, FOLLOWERS = "tests/integration/test_overload.py", "tests/integration/test_followers.py"
REGRESSION = {
    1: f"`{OVERLOAD}::test_slow_bodies_are_refused_before_the_body_capped_and_spooled`",
    2: f"`{OVERLOAD}::test_slow_loris_heads_are_cut_off_and_health_is_answered`",
    3: f"`{FOLLOWERS}::test_many_followers_of_one_meeting_share_one_reader_and_requests_stay_served`",
    7: "`tests/integration/test_downloads.py::"
    "test_trickling_urls_hit_the_deadline_and_the_cap_and_readers_stay_fast`",
    11: f"`{OVERLOAD}::test_idle_live_followers_are_bounded_cheap_and_timed_out`",
}


def _statuses(answers: list[Answer | None]) -> str:
    counts = collections.Counter(
        "no answer" if a is None else f"{a.status}" + (f" {a.code()}" if a.code() else "") for a in answers
    )
    return ", ".join(f"{n} x {what}" for what, n in counts.most_common())


def _health(probe: Probe, path: str = "/healthz") -> str:
    times = probe.latencies.get(path, [])
    worst = f"worst {max(times) * 1000:.0f} ms" if times else "never answered"
    return f"`{path}` {len(times)} answered, {worst}, {len(probe.failures)} failed"


def _rss(probe: Probe) -> str:
    return f"RSS {probe.rss_before / MIB:.0f} → peak {probe.rss_peak / MIB:.0f} MiB"


def row1(stack: Stack, pid: int) -> Row:
    forged = sign(stack.secret, b"other bytes").as_dict()
    with Probe(stack.port, pid) as probe:
        with slow_bodies(stack.port, 60, declared=32 * MIB, sent=8 * MIB, headers={}) as unsigned:
            pass
        with slow_bodies(stack.port, 60, declared=32 * MIB, sent=8 * MIB, headers=forged) as signed:
            time.sleep(2.0)
    held = probe.rss_growth < 128 * MIB and not probe.failures
    return Row(
        1,
        "60 unsigned + 60 forged-signature uploads declaring 32 MiB, 8 MiB sent each, then stalled",
        held,
        f"{_rss(probe)}; unsigned: {_statuses(unsigned)}; forged: {_statuses(signed)}; {_health(probe)}",
    )


def row2(stack: Stack, pid: int) -> Row:
    with slow_headers(stack.port, 1030, byte_every=1.0) as trickling, Probe(stack.port, pid) as probe:
        time.sleep(3.0)
        after_3s = len(trickling)
        time.sleep(12.0)
        after_15s = len(trickling)
    held = bool(probe.latencies.get("/healthz")) and not probe.failures
    return Row(
        2,
        "1,030 connections trickling a request head one byte a second, for 15 s",
        held,
        f"{_health(probe)}; trickling connections still open after 3 s: {after_3s}, after 15 s: "
        f"{after_15s}; {_rss(probe)}",
    )


def row3(stack: Stack, pid: int) -> Row:
    assert stack.put_chunk("ws", 0, _chunk()).status_code == 201
    with (
        Probe(stack.port, pid, paths=("/healthz", "/readyz"), headers=stack.auth()) as probe,
        event_followers(stack.port, "/v1/meetings/ws/events", 100, stack.token) as sockets,
    ):
        time.sleep(2.0)
        created = stack.post("/v1/meetings", json={"id": f"ws-after-{int(time.time())}"}).status_code
    states = collections.Counter(sockets)
    held = states["open"] == 100 and created == 201 and not probe.failures
    return Row(
        3,
        "100 event WebSockets on one meeting",
        held,
        f"{', '.join(f'{n} x {s}' for s, n in states.most_common())}; POST /v1/meetings meanwhile: "
        f"{created}; {_health(probe, '/readyz')}",
    )


def row7(stack: Stack, pid: int, trickle: str) -> Row:
    def fetch(seq: int) -> int:
        return post_chunk_url(stack, seq, f"{trickle}slow.wav").status_code

    paths = ("/healthz", "/readyz", "/v1/meetings")
    with Probe(stack.port, pid, paths=paths, headers=stack.auth()) as probe:
        results: list[int] = []
        threads = [threading.Thread(target=lambda s=seq: results.append(fetch(s))) for seq in range(45)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    codes = collections.Counter(results)
    held = not probe.failures and all(code in (502, 503) for code in results)
    return Row(
        7,
        "45 concurrent `POST /webhooks/chunk` of a URL that sends 1 KB every 0.25 s for 20 s",
        held,
        f"{', '.join(f'{n} x {c}' for c, n in codes.most_common())}; {_health(probe, '/v1/meetings')}; "
        f"{_health(probe, '/readyz')}",
    )


def row11(stack: Stack, pid: int) -> Row:
    meetings = [f"live-{i}" for i in range(10)]
    for meeting in meetings:
        assert stack.put_chunk(meeting, 0, _chunk()).status_code == 201
    stack.wait_until(
        "the recordings", lambda: all(stack.meeting(m)["concatenated_through"] == 0 for m in meetings)
    )
    process = psutil.Process(pid)
    with contextlib.ExitStack() as followers:
        answers: list[Answer | None] = []
        for meeting in meetings:
            path = f"/v1/meetings/{meeting}/live.wav"
            answers += followers.enter_context(idle_followers(stack.port, path, 150, stack.token))
        status = f"/v1/meetings/{meetings[0]}"
        with Probe(stack.port, pid, paths=(status,), headers=stack.auth()) as probe:
            before = sum(process.cpu_times()[:2])
            time.sleep(10.0)
            cpu = (sum(process.cpu_times()[:2]) - before) / 10.0
    held = cpu < 0.25 and not probe.failures
    return Row(
        11,
        "1,500 idle `live.wav` followers on 10 meetings (150 each), held for 10 s",
        held,
        f"{_statuses(answers)}; gateway CPU while idle {cpu:.0%} of a core; {_health(probe, status)}; "
        f"{_rss(probe)}",
    )


def _chunk() -> bytes:
    return wav_bytes(tone_pcm(1.0, SPEECH_FORMAT, seed=0), SPEECH_FORMAT)


def render(rows: list[Row], when: datetime, took: float, info: dict[str, str]) -> str:
    lines = [
        BEGIN,
        f"Last run: {when:%Y-%m-%d %H:%M} UTC, {took:.0f} s, `make attack` "
        "(`uv run python -m tests.attack`); written by the run, do not edit.",
        f"Machine: {info['CPU']}, {info['cores usable by this process']} usable cores, {info['memory']}, "
        f"load average at start {info['load average at start (1/5/15 min)']}.",
        "",
        "| Row | Attack | Held | Measured | Regression test |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        held = "yes" if row.held else "**no**"
        lines.append(f"| {row.number} | {row.attack} | {held} | {row.measured} | {REGRESSION[row.number]} |")
    return "\n".join([*lines, END])


def write_doc(doc: Path, section: str) -> None:
    text = doc.read_text()
    if BEGIN in text:
        text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: section, text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n## Attack run\n\n" + section + "\n"
    doc.write_text(text)


@contextlib.contextmanager
def _soft_file_limit(limit: int) -> Iterator[None]:
    """Processes started inside inherit a soft open-file limit of ``limit`` (the hard one is kept)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(limit, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.attack", description=__doc__)
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "reliability.md", help="page to update")
    parser.add_argument("--rows", default="1,2,3,7,11", help="which rows to run")
    args = parser.parse_args(argv)
    wanted = {int(r) for r in args.rows.split(",")}
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # this process holds thousands of sockets
    info, started, when = machine(), time.monotonic(), datetime.now(UTC)
    rows: list[Row] = []
    with (
        tempfile.TemporaryDirectory(prefix="af-attack-") as tmp,
        services.embedded_redis() as redis_url,
        trickle_server() as trickle,
    ):
        stack = make_stack(
            Path(tmp),
            redis_url,
            f"sqlite:///{tmp}/audioflow.db",
            services.redis_prefix(),
            AUDIOFLOW_URL_ALLOWLIST=trickle,
            AUDIOFLOW_LOG_LEVEL="WARNING",
        )
        try:
            with _soft_file_limit(1024):
                stack.start_api()
                stack.start_worker("concat")
            pid = stack.procs["api"][0].pid
            attacks: dict[int, Callable[[], Row]] = {
                1: lambda: row1(stack, pid),
                2: lambda: row2(stack, pid),
                3: lambda: row3(stack, pid),
                7: lambda: row7(stack, pid, trickle),
                11: lambda: row11(stack, pid),
            }
            for number, attack in attacks.items():
                if number in wanted:
                    rows.append(attack())
                    print(f"row {rows[-1].number}: held={rows[-1].held}: {rows[-1].measured}", flush=True)
                    time.sleep(6.0)  # keep-alive connections of the previous row close (5 s)
        finally:
            stack.stop()
    write_doc(args.doc, render(rows, when, time.monotonic() - started, info))
    return 0 if all(row.held for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
