"""The local autoscaler of ``audioflow up`` (``cli.up._autoscale``, its real loop and tick) against a real
Redis stream, scaling real processing worker processes, for the scaling section.

Its supervisor is ``up.Supervisor`` with two changes: children log into the run's folder instead of the
terminal, and every ``scale`` call is noted with its time. The processing policy's scale-down window
and cooldown are shortened for the run (``up.POLICIES`` is swapped and put back), so that coming back
to the minimum takes seconds; what is compared is the measured time against the configured cooldown.
"""

from __future__ import annotations

import contextlib
import math
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import redis
from sqlalchemy.orm import Session, sessionmaker

from audioflow.cli import up
from audioflow.core.keys import PROCESSING_GROUP, Keys
from audioflow.core.scaling import ScalingPolicy
from audioflow.core.storage import LocalStorage
from audioflow.core.streams.queues import backlog
from bench.common import Unmeasured
from bench.concat_stage import Audio, Meeting
from tests.integration.stack import Stack

MIN_DECODE_S = 0.1  # the least a processing worker takes for one 5 s chunk of speech on this machine


@dataclass
class NotingSupervisor(up.Supervisor):
    changes: list[tuple[float, str, int]] = field(default_factory=list)  # (monotonic, kind, count)

    def spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        index = len(self.children.get(name, []))
        with (self.logs / f"up-{name}-{index}.log").open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "audioflow.cli", *args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.children.setdefault(name, []).append(proc)
        return proc

    def scale(self, kind: str, count: int) -> None:
        self.changes.append((time.monotonic(), kind, count))
        super().scale(kind, count)


@dataclass(frozen=True)
class Cycle:
    reaction_s: float  # backlog appeared -> scale-up decided (the worker process spawned)
    serving_s: float  # backlog appeared -> the new worker read from the stream
    drain_s: float  # backlog appeared -> backlog back to 0
    back_to_min_s: float  # backlog back to 0 -> scaled down to the minimum


@contextlib.contextmanager
def autoscaled(stack: Stack, policy: ScalingPolicy) -> Iterator[NotingSupervisor]:
    """The gateway of ``stack`` plus ``_autoscale`` running with ``policy`` for processing workers."""
    saved = up.POLICIES["processing"]
    up.POLICIES["processing"] = policy
    supervisor = NotingSupervisor(stack.env, stack.workdir)
    supervisor.children["api"] = stack.procs["api"]  # _autoscale stops everything if the gateway is gone
    thread = threading.Thread(
        target=up._autoscale,
        args=(supervisor, stack.env["REDIS_URL"], Keys(stack.env["AUDIOFLOW_REDIS_PREFIX"])),
        daemon=True,
    )
    try:
        for kind in ("processing", "concat"):
            supervisor.scale(kind, up.POLICIES[kind].min_replicas)
        thread.start()
        yield supervisor
    finally:
        supervisor.stop_all()
        thread.join(up.TICK_S * 3)
        up.POLICIES["processing"] = saved


def _consumers(client: redis.Redis, keys: Keys) -> int:
    try:
        return len(client.xinfo_consumers(keys.transcribe, PROCESSING_GROUP))
    except redis.ResponseError:
        return 0


def _until(what: str, check: Callable[[], object], timeout_s: float, every: float = 0.01) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(every)
    raise Unmeasured(f"local autoscaler: {what} did not happen within {timeout_s:.0f} s")


def cycle(
    supervisor: NotingSupervisor,
    client: redis.Redis,
    keys: Keys,
    meeting: Meeting,
    first_seq: int,
    count: int,
    policy: ScalingPolicy,
    phase: float,
) -> Cycle:
    """Stage ``count`` chunks, make them a backlog with one XADD pipeline at a random moment of the
    autoscaler's tick (the previous cycle ended right after one), time the reactions."""
    for seq in range(first_seq, first_seq + count):
        meeting.stage_chunk(seq, meeting.audio.pcm(5.0, seq))
    time.sleep(phase)
    consumers = _consumers(client, keys)
    pipe = client.pipeline(transaction=True)
    for seq in range(first_seq, first_seq + count):
        pipe.xadd(keys.transcribe, {"meeting_id": meeting.id, "seq": seq})
    pipe.execute()
    appeared = time.monotonic()
    noted = len(supervisor.changes)

    def scaled(to_min: bool) -> float | None:
        for at, kind, n in supervisor.changes[noted:]:
            if kind == "processing" and (n == policy.min_replicas if to_min else n > policy.min_replicas):
                return at
        return None

    _until("the scale-up", lambda: scaled(False), 30)
    _until("the new worker's first read", lambda: _consumers(client, keys) > consumers, 60)
    serving = time.monotonic()
    _until("the drain", lambda: backlog(client, keys.transcribe, PROCESSING_GROUP) == 0, 300, every=0.05)
    drained = time.monotonic()
    timeout = policy.cooldown_s + policy.scale_down_window_s + 10 * up.TICK_S
    _until("the scale-down", lambda: scaled(True), timeout)
    decided, back = scaled(False), scaled(True)
    assert decided is not None and back is not None
    alive = lambda: len(supervisor.alive("processing")) == policy.min_replicas  # noqa: E731
    _until("the stopped worker's exit", alive, 60)
    return Cycle(decided - appeared, serving - appeared, drained - appeared, back - drained)


def run_local(
    stack: Stack, sessions: sessionmaker[Session], redis_url: str, repeats: int, tiny: bool
) -> tuple[ScalingPolicy, float, list[Cycle]]:
    production = up.POLICIES["processing"]
    policy = replace(production, scale_down_window_s=1.0 if tiny else 3.0, cooldown_s=2.5 if tiny else 6.0)
    if policy.max_replicas <= policy.min_replicas:
        raise Unmeasured(
            f"the local processing policy cannot scale here: max = cores = {policy.max_replicas}"
        )
    # Asks for the maximum, with a margin: one worker drains some before the next tick reads the backlog,
    # up to a tick's worth (TICK_S at no less than MIN_DECODE_S a chunk; Whisper with its 15 s window
    # drained a margin of one before a tick once, and the scale-up never came).
    backlog_size = policy.target_backlog * policy.max_replicas + 1 + math.ceil(up.TICK_S / MIN_DECODE_S)
    keys = Keys(stack.env["AUDIOFLOW_REDIS_PREFIX"])
    meeting = Meeting(
        "scaling-local",
        5.0,
        Audio(),
        LocalStorage(Path(stack.env["AUDIOFLOW_DATA_DIR"]), fsync=False),
        sessions,
    )
    meeting.create()
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    cycles: list[Cycle] = []
    try:
        with autoscaled(stack, policy) as supervisor:
            _until("the first processing worker", lambda: _consumers(client, keys) >= 1, 60, every=0.01)
            cold_start = time.monotonic() - supervisor.changes[0][0]  # spawned -> first read, machine idle
            rng = random.Random(5)
            for r in range(repeats):
                phase = rng.uniform(0, up.TICK_S)
                cycles.append(
                    cycle(supervisor, client, keys, meeting, r * backlog_size, backlog_size, policy, phase)
                )
    finally:
        client.close()
    return policy, cold_start, cycles
