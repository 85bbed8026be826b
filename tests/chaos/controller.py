"""The chaos run as a function: a real gateway and real workers, shuffled duplicate uploads, SIGKILLs.

Meetings are uploaded concurrently (one thread each, shuffled, with duplicates, optionally paced)
while a controller SIGKILLs a random live worker, processing or concat, every ``kill_every_s`` and at
once starts a replacement of the same kind (see :class:`Killer`). Killing goes on until every chunk
is sent *and* the pipeline has done all its work (at most ``chaos_max_s``), so the kills land in
transcription and concatenation and not only during ingest. Then a quiet period lets leases expire
and redeliveries finish, the meetings are ended, and the end state is checked: recordings
byte-exact, each seq transcribed exactly once, no entry pending in any consumer group, no dead
letters. Checks are collected, not raised, so a run reports every failure at once;
:attr:`ChaosResult.passed` says whether all held.
"""

from __future__ import annotations

import random
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
import redis

from audioflow.core.events import decode_event
from audioflow.core.keys import CONCAT_GROUP, PROCESSING_GROUP, Keys
from audioflow.core.streams.queues import dead_letter_stream
from audioflow.workers.simulate import Delivery, cut_chunks, load_speech, plan, send
from tests.integration.checks import (
    assert_completed_last,
    assert_recording_events_monotonic,
    assert_recording_exact,
    assert_transcribed_once,
)
from tests.integration.stack import Stack, make_stack

KINDS = ("processing", "concat")
Progress = Callable[[str], None]


@dataclass(frozen=True)
class ChaosConfig:
    meetings: int = 3
    chunks: int = 300  # per meeting
    chunk_seconds: float = 0.5
    kill_every_s: float = 2.0
    seed: int = 1
    processing_workers: int = 2
    concat_workers: int = 2
    duplicates: int = 30  # extra uploads of already planned chunks, per meeting
    upload_rate: float = 3.0  # uploads per second per meeting; 0 = as fast as the gateway answers
    min_kills: int = 0  # keep killing until at least this many, even if the work is done sooner
    # A lease longer than FAST_ENV's so that a live worker slowed by a busy machine keeps its entry
    # (takeovers from live workers are still counted), and a delivery ceiling random kills do not
    # reach: with max_deliveries=5 the poison-pill rule dead-lettered a good chunk whose holders
    # happened to be killed five times in a row (seen in an early run).
    lease_ms: int = 3000
    max_deliveries: int = 25
    quiet_s: float = 5.0  # the final period without kills: longer than a lease plus a claim interval
    chaos_max_s: float = 1200.0  # kill for at most this long, done or not (a slow machine still ends)
    settle_timeout_s: float = 600.0  # for the meetings to complete and the groups to drain afterwards

    def workers(self) -> dict[str, int]:
        return {"processing": self.processing_workers, "concat": self.concat_workers}


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str = ""


@dataclass
class ChaosResult:
    config: ChaosConfig
    workdir: Path
    kills: Counter[str] = field(default_factory=Counter)
    started: Counter[str] = field(default_factory=Counter)  # worker processes, replacements included
    statuses: Counter[int] = field(default_factory=Counter)  # final HTTP status per upload (0: no answer)
    recoveries: int = 0  # recordings repaired on open after a kill tore an append
    handler_errors: int = 0  # "handler failed" lines in the worker logs
    skipped_ticks: int = 0  # kill ticks whose pick had not been consuming for a tick yet
    done_under_chaos: bool = False  # all work was done before the kills stopped (else chaos_max_s hit)
    # Seen by sampling the pending entries (so at least these many): entries taken over from a killed
    # worker, and from a live one whose lease ran out; the most deliveries of one entry.
    takeovers_after_kill: int = 0
    takeovers_from_live: int = 0
    max_deliveries_seen: int = 0
    send_s: float = 0.0
    work_s: float = 0.0  # from the first upload until all work was done (or chaos_max_s)
    wall_s: float = 0.0
    checks: list[Check] = field(default_factory=list)

    @property
    def chunks_sent(self) -> int:
        return self.config.meetings * self.config.chunks

    @property
    def duplicates(self) -> int:
        return self.config.meetings * self.config.duplicates

    @property
    def uploads(self) -> int:
        return sum(self.statuses.values())

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(check.passed for check in self.checks)

    def summary(self) -> str:
        kills = ", ".join(f"{kind} {self.kills[kind]}" for kind in KINDS)
        lines = [
            f"{'PASSED' if self.passed else 'FAILED'}: {self.chunks_sent} chunks + {self.duplicates} "
            f"duplicates = {self.uploads} uploads {dict(sorted(self.statuses.items()))}",
            f"SIGKILLs: {sum(self.kills.values())} ({kills}); ticks skipped (pick still starting): "
            f"{self.skipped_ticks}; worker processes started: "
            f"{sum(self.started.values())}; torn recordings repaired: {self.recoveries}; "
            f"handler errors logged: {self.handler_errors}",
            f"takeovers seen: {self.takeovers_after_kill} after a kill, {self.takeovers_from_live} from a "
            f"live worker; most deliveries of one entry: {self.max_deliveries_seen}",
            f"sending {self.send_s:.1f} s, "
            + (
                f"all work done after {self.work_s:.1f} s"
                if self.done_under_chaos
                else f"kills stopped at {self.work_s:.1f} s before all work was done"
            )
            + f", wall {self.wall_s:.1f} s",
        ]
        lines += [f"  [{'ok' if c.passed else 'FAIL'}] {c.name} {c.detail}".rstrip() for c in self.checks]
        return "\n".join(lines)


def run_chaos(
    config: ChaosConfig,
    *,
    workdir: Path,
    redis_url: str,
    database_url: str,
    prefix: str,
    progress: Progress = lambda _: None,
) -> ChaosResult:
    """One chaos run on an empty database and an unused Redis prefix; workers' logs go to workdir."""
    result = ChaosResult(config, workdir)
    began = time.monotonic()
    # Shuffled uploads leave seqs missing for minutes: they must be waited for, never bridged.
    stack = make_stack(
        workdir,
        redis_url,
        database_url,
        prefix,
        AUDIOFLOW_GAP_TIMEOUT_S="86400",
        AUDIOFLOW_LEASE_MS=str(config.lease_ms),
        AUDIOFLOW_MAX_DELIVERIES=str(config.max_deliveries),
    )
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        _run(stack, client, Keys(prefix), config, result, progress)
    finally:
        stack.stop()
        client.close()
        _scan_logs(workdir, result)
        result.wall_s = time.monotonic() - began
    return result


class Killer(threading.Thread):
    """Every ``every_s``: pick a random live worker; if it has been consuming for at least
    ``every_s``, SIGKILL it, reap it and start one of its kind at once, else skip the tick.

    Sparing a worker that is still starting (importing its modules takes seconds on a busy machine)
    keeps kills where the work is, and picking among all live workers rather than only the ready
    ones keeps each worker's odds at one in N per tick: when startups are slow, ticks are skipped
    instead of every newly ready worker dying at once with the first entry it reclaimed.
    """

    def __init__(self, stack: Stack, every_s: float, rng: random.Random) -> None:
        super().__init__(name="chaos-killer", daemon=True)
        self.stack, self.every_s, self.rng = stack, every_s, rng
        self.stopping = threading.Event()
        self.kills: Counter[str] = Counter()
        self.started: Counter[str] = Counter()
        self.skipped = 0
        self.killed: set[int] = set()
        self.consuming_since: dict[int, float] = {}  # pid -> when its log was first seen "consuming"
        self.error: str | None = None  # a thread must not raise: pytest turns that into an error

    @property
    def total(self) -> int:
        return sum(self.kills.values())

    def run(self) -> None:
        try:
            while not self.stopping.wait(self.every_s):
                self.tick()
        except Exception:
            self.error = traceback.format_exc()

    def tick(self) -> None:
        now = time.monotonic()
        live = []
        for kind in KINDS:
            for index, proc in enumerate(self.stack.procs.get(kind, [])):
                if proc.poll() is not None:
                    continue
                live.append((kind, proc))
                log = self.stack.workdir / f"{kind}-{index}.log"  # Stack's naming
                if proc.pid not in self.consuming_since and b" consuming " in log.read_bytes():
                    self.consuming_since[proc.pid] = now
        if not live:
            return
        kind, victim = self.rng.choice(live)
        since = self.consuming_since.get(victim.pid)
        if since is None or now - since < self.every_s:
            self.skipped += 1
            return
        victim.kill()
        victim.wait()
        self.killed.add(victim.pid)
        self.stack.start_worker(kind)
        self.kills[kind] += 1
        self.started[kind] += 1


class PendingWatch(threading.Thread):
    """Samples who holds each pending work entry, to count takeovers and the most deliveries of one.

    Consumer names end in the worker's pid (``streams.consumer.consumer_name``), so a takeover is "after a
    kill" when the previous holder is a pid the killer killed, else "from a live worker".
    """

    def __init__(self, redis_url: str, keys: Keys, killed: set[int], every_s: float = 0.2) -> None:
        super().__init__(name="chaos-pending-watch", daemon=True)
        self.client = redis.Redis.from_url(redis_url, decode_responses=True)
        self.streams = {keys.transcribe: PROCESSING_GROUP, keys.concat: CONCAT_GROUP}
        self.killed, self.every_s = killed, every_s
        self.stopping = threading.Event()
        self.holders: dict[tuple[str, str], str] = {}
        self.after_kill = self.from_live = self.max_deliveries = 0
        self.error: str | None = None

    def run(self) -> None:
        try:
            while not self.stopping.wait(self.every_s):
                self.sample()
        except Exception:
            self.error = traceback.format_exc()
        finally:
            self.client.close()

    def sample(self) -> None:
        for stream, group in self.streams.items():
            try:
                rows = self.client.xpending_range(stream, group, "-", "+", 100_000)
            except redis.ResponseError:  # NOGROUP: no worker has created the group yet
                continue
            for row in rows:
                key, holder = (stream, str(row["message_id"])), str(row["consumer"])
                previous = self.holders.get(key)
                if previous is not None and previous != holder:
                    if int(previous.rsplit("-", 1)[1]) in self.killed:
                        self.after_kill += 1
                    else:
                        self.from_live += 1
                self.holders[key] = holder
                self.max_deliveries = max(self.max_deliveries, int(row["times_delivered"]))


def _upload(stack: Stack, deliveries: list[Delivery], rate: float, statuses: Counter[int]) -> None:
    """One meeting's uploads, signed and retried on 503 as the simulator does. Each sender has its own
    HTTP client (the stack's is the main thread's)."""
    started = time.monotonic()
    with httpx.Client(timeout=30) as client:
        for index, delivery in enumerate(deliveries):
            if rate:
                time.sleep(max(0.0, started + index / rate - time.monotonic()))
            try:
                statuses[send(client, stack.base_url, stack.secret, delivery)] += 1
            except Exception:
                statuses[0] += 1  # no answer even after the retries (checked: every upload answered)


def _run(
    stack: Stack,
    client: redis.Redis,
    keys: Keys,
    config: ChaosConfig,
    result: ChaosResult,
    progress: Progress,
) -> None:
    fmt, pcm = load_speech()
    chunks = cut_chunks(fmt, pcm, config.chunk_seconds, config.chunks)
    meeting_ids = [f"chaos-{i}" for i in range(config.meetings)]
    stack.start_api()
    for kind, count in config.workers().items():
        for _ in range(count):
            stack.start_worker(kind)
        result.started[kind] += count
    for meeting_id in meeting_ids:
        stack.post("/v1/meetings", json={"id": meeting_id}).raise_for_status()

    rng = random.Random(config.seed)
    plans = {
        m: plan([m], chunks, shuffle=True, duplicates=config.duplicates, drop=set(), rng=rng)
        for m in meeting_ids
    }
    statuses: dict[str, Counter[int]] = {m: Counter() for m in meeting_ids}
    senders = [
        threading.Thread(
            target=_upload, args=(stack, plans[m], config.upload_rate, statuses[m]), name=f"send-{m}"
        )
        for m in meeting_ids
    ]
    killer = Killer(stack, config.kill_every_s, random.Random(config.seed + 1))
    watch = PendingWatch(stack.env["REDIS_URL"], keys, killer.killed)
    progress(
        f"{len(meeting_ids)} meetings x {config.chunks} chunks of {config.chunk_seconds:g} s, "
        f"{sum(map(len, plans.values()))} uploads; workers {config.workers()}; "
        f"a SIGKILL every {config.kill_every_s:g} s"
    )
    for thread in (killer, watch, *senders):
        thread.start()
    try:
        try:
            done = _under_chaos(stack, config, result, meeting_ids, senders, killer, statuses, progress)
        finally:
            killer.stopping.set()
            killer.join()
        result.kills, result.started = killer.kills, result.started + killer.started
        result.skipped_ticks = killer.skipped
        for sender in senders:
            sender.join()  # bounded: each upload gives up after its retries
        for counts in statuses.values():
            result.statuses.update(counts)
        result.done_under_chaos = done
        _add(result, "the chaos controller ran", lambda: _assert(killer.error is None, killer.error or ""))

        progress(
            f"kills stopped ({'all work done' if done else f'after {config.chaos_max_s:g} s'}); "
            f"{config.quiet_s:g} s quiet, then the meetings end"
        )
        time.sleep(config.quiet_s)
        for meeting_id in meeting_ids:
            stack.post(f"/v1/meetings/{meeting_id}/end").raise_for_status()
        settle_by = time.monotonic() + config.settle_timeout_s
        ended = _eventually(
            lambda: all(stack.meeting(m)["phase"] != "finalizing" for m in meeting_ids),
            settle_by - time.monotonic(),
        )
        drained = _eventually(
            lambda: not any(_pending(client, keys).values()), max(5.0, settle_by - time.monotonic())
        )
        progress(f"meetings ended: {ended}, pending entries drained: {drained}; checking")
    finally:
        watch.stopping.set()
        watch.join()
    result.takeovers_after_kill, result.takeovers_from_live = watch.after_kill, watch.from_live
    result.max_deliveries_seen = watch.max_deliveries
    _add(result, "the pending-entry sampler ran", lambda: _assert(watch.error is None, watch.error or ""))

    for meeting_id in meeting_ids:
        _check_meeting(stack, client, keys, config, meeting_id, statuses[meeting_id], chunks, result)
    _add(result, "no entry pending in any consumer group", lambda: _assert_no_pending(client, keys))
    _add(result, "dead-letter streams empty", lambda: _assert_no_dead_letters(client, keys))
    unexpected = [
        f"{kind} pid {p.pid} exit {p.returncode}"
        for kind in KINDS
        for p in stack.procs.get(kind, [])
        if p.poll() is not None and p.pid not in killer.killed
    ]
    _add(result, "no worker exited unless killed", lambda: _assert(not unexpected, ", ".join(unexpected)))


def _under_chaos(
    stack: Stack,
    config: ChaosConfig,
    result: ChaosResult,
    meeting_ids: list[str],
    senders: list[threading.Thread],
    killer: Killer,
    statuses: dict[str, Counter[int]],
    progress: Progress,
) -> bool:
    """Wait, reporting progress, until every chunk is sent and all work done (and at least min_kills
    kills); whether that happened within chaos_max_s."""
    total = len(meeting_ids) * config.chunks
    planned = total + len(meeting_ids) * config.duplicates
    t0 = time.monotonic()
    noted, done = 0.0, False
    while not done and time.monotonic() < t0 + config.chaos_max_s:
        time.sleep(0.5)
        now = time.monotonic()
        sending = any(sender.is_alive() for sender in senders)
        if not sending and not result.send_s:
            result.send_s = now - t0
        settled, recorded = _totals(stack, meeting_ids)
        done = not sending and settled == recorded == total and killer.total >= config.min_kills
        if done or now - noted >= 5:
            noted = now
            uploaded = sum(sum(s.values()) for s in statuses.values())
            progress(
                f"t={now - t0:5.1f} s uploaded {uploaded}/{planned} transcribed {settled}/{total} "
                f"recorded {recorded}/{total} kills {dict(killer.kills)}"
            )
    result.work_s = time.monotonic() - t0
    return done


def _check_meeting(
    stack: Stack,
    client: redis.Redis,
    keys: Keys,
    config: ChaosConfig,
    meeting_id: str,
    statuses: Counter[int],
    chunks: list[bytes],
    result: ChaosResult,
) -> None:
    count = config.chunks
    expected = Counter({201: count, 200: config.duplicates})
    _add(
        result,
        f"{meeting_id}: every upload answered 201, duplicates 200",
        lambda: _assert(statuses == expected, f"got {dict(statuses)}"),
    )

    def completed() -> None:
        status = stack.meeting(meeting_id)
        got = (status["phase"], status["chunks_received"], status["gaps"])
        _assert(got == ("completed", count, []), f"(phase, received, gaps) = {got}")

    _add(result, f"{meeting_id}: completed, no gaps", completed)
    _add(
        result,
        f"{meeting_id}: recording byte-identical to the reference",
        lambda: assert_recording_exact(stack, meeting_id, chunks),
    )
    events = _events(client, keys, meeting_id)
    _add(
        result,
        f"{meeting_id}: each seq transcribed exactly once",
        lambda: assert_transcribed_once(stack, meeting_id, count, events),
    )
    _add(
        result,
        f"{meeting_id}: recording.extended never went backwards",
        lambda: assert_recording_events_monotonic(events, count - 1),
    )
    _add(
        result,
        f"{meeting_id}: nothing announced after completed",
        lambda: assert_completed_last(events),
    )


# ---- observations ------------------------------------------------------------------------------------


def _totals(stack: Stack, meeting_ids: list[str]) -> tuple[int, int]:
    """Chunks settled (transcribed or failed) and chunks held by the recordings, over all meetings."""
    settled = recorded = 0
    for meeting_id in meeting_ids:
        status = stack.meeting(meeting_id)
        settled += status["chunks_transcribed"] + status["chunks_failed"]
        recorded += status["concatenated_through"] + 1
    return settled, recorded


def _pending(client: redis.Redis, keys: Keys) -> dict[str, int]:
    """Pending entries of every consumer group of the work streams, by ``stream/group``."""
    pending: dict[str, int] = {}
    for stream in (keys.transcribe, keys.concat):
        if not client.exists(stream):
            continue
        for group in client.xinfo_groups(stream):
            pending[f"{stream}/{group['name']}"] = int(client.xpending(stream, group["name"])["pending"])
    return pending


def _assert_no_pending(client: redis.Redis, keys: Keys) -> None:
    pending = _pending(client, keys)
    wanted = {f"{keys.transcribe}/{PROCESSING_GROUP}", f"{keys.concat}/{CONCAT_GROUP}"}
    _assert(wanted <= pending.keys(), f"groups missing: {wanted - pending.keys()}")
    _assert(not any(pending.values()), f"pending: {pending}")


def _assert_no_dead_letters(client: redis.Redis, keys: Keys) -> None:
    dead = {s: client.xrange(s, count=5) for s in map(dead_letter_stream, (keys.transcribe, keys.concat))}
    _assert(not any(dead.values()), f"dead letters: {dead}")


def _events(client: redis.Redis, keys: Keys, meeting_id: str) -> list[dict[str, Any]]:
    """The meeting's whole event stream, read from Redis (complete, unlike a live follower)."""
    stream, low = keys.events(meeting_id), "-"
    events: list[dict[str, Any]] = []
    while True:  # the client decodes responses: ids and fields are text
        page = cast(list[tuple[str, dict[str, str]]], client.xrange(stream, min=low, count=1000))
        if not page:
            return events
        events += [decode_event(meeting_id, event_id, fields) for event_id, fields in page]
        low = f"({page[-1][0]}"


def _scan_logs(workdir: Path, result: ChaosResult) -> None:
    for log in workdir.glob("*.log"):
        text = log.read_text(errors="replace")
        result.recoveries += text.count("recovered after a crash")
        result.handler_errors += text.count("handler failed")


# ---- checks ------------------------------------------------------------------------------------------


def _assert(condition: bool, detail: str) -> None:
    if not condition:
        raise AssertionError(detail)


def _add(result: ChaosResult, name: str, check: Callable[[], None]) -> None:
    """Run one check and record it; a failure is described by its message or by the failing line."""
    try:
        check()
    except Exception as exc:
        where = traceback.extract_tb(exc.__traceback__)[-1]
        message = str(exc) or f"{Path(where.filename).name}:{where.lineno}: {where.line}"
        result.checks.append(Check(name, False, f"{type(exc).__name__}: {message}"[:800]))
    else:
        result.checks.append(Check(name, True))


def _eventually(condition: Callable[[], bool], timeout: float, every: float = 0.5) -> bool:
    """Poll until ``condition`` holds; whether it did (the checks that follow say what is wrong)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(every)
    return True
