"""Load for the STT section: a processing worker's readiness, a burst of chunks timed to its last
segment, and real-time meetings (one 5 s chunk every 5 s each) with the backlog sampled meanwhile."""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import redis
from redis.exceptions import ResponseError
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from audioflow.core.db.models import Segment
from audioflow.core.keys import PROCESSING_GROUP, Keys
from audioflow.core.settings import Settings
from audioflow.core.streams.queues import backlog
from bench.common import Unmeasured
from tests.integration.stack import Stack

PERIOD_S = 5.0  # a meeting sends one chunk this often
_SHORTENED = {  # what tests.integration.stack.FAST_ENV shortens for tests, by setting name
    "AUDIOFLOW_LEASE_MS": "lease_ms",
    "AUDIOFLOW_CLAIM_INTERVAL_S": "claim_interval_s",
    "AUDIOFLOW_BLOCK_MS": "block_ms",
    "AUDIOFLOW_MAX_DELIVERIES": "max_deliveries",
    "AUDIOFLOW_GAP_TIMEOUT_S": "gap_timeout_s",
    "AUDIOFLOW_FSYNC": "fsync",
}


def production_env() -> dict[str, str]:
    """The settings' defaults for what the test stack shortens: a benchmark measures production's
    configuration (a 1.5 s lease, say, lets a peer take over a chunk still being decoded on a busy box)."""
    return {env: str(Settings.model_fields[name].default).lower() for env, name in _SHORTENED.items()}


SAMPLE_S = 0.25


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def wait_consumers(client: redis.Redis, keys: Keys, count: int, timeout_s: float = 60.0) -> None:
    """Until ``count`` processing workers have joined the group (each registers on its first read)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if len(client.xinfo_consumers(keys.transcribe, PROCESSING_GROUP)) >= count:
                return
        except ResponseError:
            pass  # no group yet
        time.sleep(0.1)
    raise Unmeasured(f"{count} processing worker(s) did not start within {timeout_s:.0f} s")


def segments(sessions: sessionmaker[Session], meeting_id: str) -> tuple[int, float, float]:
    """``(count, sum of decode_s, epoch of the last segment's commit)`` for a meeting."""
    with sessions() as session:
        row = session.execute(
            select(func.count(), func.sum(Segment.decode_s), func.max(Segment.created_at)).where(
                Segment.meeting_id == meeting_id
            )
        ).one()
    count, decode, last = row
    return int(count), float(decode or 0.0), last.timestamp() if last is not None else 0.0


@dataclass(frozen=True)
class Burst:
    audio_s: float
    wall_s: float  # first upload started -> last segment committed
    decode_s: float  # the worker's own decode time (overlap included)


def burst(
    stack: Stack, sessions: sessionmaker[Session], meeting_id: str, bodies: list[bytes], audio_s: float
) -> Burst:
    """Upload every chunk at once and time until the worker has committed the last segment."""
    started = time.time()
    for seq, body in enumerate(bodies):
        if stack.send(meeting_id, seq, body) != 201:
            raise Unmeasured(f"the gateway refused {meeting_id}/{seq}")
    deadline = time.monotonic() + 60 + 3 * audio_s
    while time.monotonic() < deadline:
        count, decode, last = segments(sessions, meeting_id)
        if count == len(bodies):
            return Burst(audio_s, last - started, decode)
        time.sleep(0.05)
    raise Unmeasured(f"{meeting_id}: {len(bodies)} chunks were not all transcribed in time")


@dataclass
class Window:
    meetings: int
    seconds: float
    samples: list[tuple[float, int]] = field(default_factory=list)  # (s since start, backlog)
    late_s: float = 0.0  # how far the sender fell behind its schedule, at worst
    # CPU over the window, in cores: audioflow's processes, this load generator, the whole machine
    stack_cores: float = 0.0
    own_cores: float = 0.0
    machine_cores: float = 0.0

    def growth(self) -> float:
        """Backlog growth over the window after its first period (least-squares slope x duration)."""
        skip = min(PERIOD_S, self.seconds / 2)  # the first round of uploads is only filling the pipe
        settled = [(t, b) for t, b in self.samples if t >= skip]
        if len(settled) < 4:
            raise Unmeasured(f"too few backlog samples at {self.meetings} meetings")
        t, b = np.array(settled, dtype=float).T
        slope = float(np.polyfit(t, b, 1)[0])
        return slope * float(t[-1] - t[0])


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int | str) -> float:
    """User + system CPU time of a process (``/proc/<pid>/stat``); 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime: fields 14 and 15 of stat


def machine_busy() -> tuple[float, float]:
    """``(busy, total)`` CPU seconds of the whole machine since boot, all cores (``/proc/stat``)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / _TICK, sum(values) / _TICK


@dataclass(frozen=True)
class CpuMark:
    at: float
    stack: float
    own: float
    busy: float
    total: float

    @classmethod
    def now(cls, stack: Stack) -> CpuMark:
        pids = [p.pid for group in stack.procs.values() for p in group]
        return cls(time.monotonic(), sum(cpu_seconds(p) for p in pids), cpu_seconds("self"), *machine_busy())


def _sample(client: redis.Redis, keys: Keys, window: Window, start: float, stop: threading.Event) -> None:
    while not stop.is_set():
        window.samples.append((time.monotonic() - start, backlog(client, keys.transcribe, PROCESSING_GROUP)))
        stop.wait(SAMPLE_S)


def realtime(
    stack: Stack,
    client: redis.Redis,
    keys: Keys,
    tag: str,
    meetings: int,
    seconds: float,
    bodies: list[bytes],
) -> Window:
    """``meetings`` meetings, phases spread evenly over the period, each sending a 5 s chunk every 5 s
    for ``seconds``; the backlog is sampled every 0.25 s meanwhile."""
    rounds = max(1, round(seconds / PERIOD_S))
    schedule = sorted((PERIOD_S * (r + m / meetings), m, r) for m in range(meetings) for r in range(rounds))
    window = Window(meetings, rounds * PERIOD_S)
    stop = threading.Event()
    before = CpuMark.now(stack)
    start = time.monotonic()
    sampler = threading.Thread(target=_sample, args=(client, keys, window, start, stop), daemon=True)
    sampler.start()
    try:
        for at, m, r in schedule:
            delay = start + at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            window.late_s = max(window.late_s, -delay)
            body = bodies[(m * 7 + r) % len(bodies)]
            if stack.send(f"{tag}-{m}", r, body) != 201:
                raise Unmeasured(f"the gateway refused {tag}-{m}/{r}")
        time.sleep(max(0.0, start + window.seconds - time.monotonic()))
    finally:
        stop.set()
        sampler.join()
    after = CpuMark.now(stack)
    elapsed = after.at - before.at
    cores = os.cpu_count() or 1
    window.stack_cores = (after.stack - before.stack) / elapsed
    window.own_cores = (after.own - before.own) / elapsed
    window.machine_cores = (after.busy - before.busy) / (after.total - before.total) * cores
    return window


def drain(client: redis.Redis, keys: Keys, timeout_s: float) -> float:
    """Until the processing backlog is empty; returns how long that took."""
    started = time.monotonic()
    while backlog(client, keys.transcribe, PROCESSING_GROUP) > 0:
        if time.monotonic() - started > timeout_s:
            raise Unmeasured(f"the processing backlog did not drain within {timeout_s:.0f} s")
        time.sleep(0.2)
    return time.monotonic() - started
