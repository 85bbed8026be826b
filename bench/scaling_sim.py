"""A simulated clock for the scaling section: the real policy (``desired_replicas``) driven over a steady
10-minute load, replicas that take time to start and finish their chunk before they stop.

The world is a model, stated here so that the figures can be judged: ``meetings`` meetings each send a
chunk every ``period_s`` at a fixed random phase (plus a little jitter); a replica decodes one chunk at
a time, taking a lognormal time around ``service_s``; a new replica serves after ``startup_s``; a
removed one finishes its chunk first. The backlog the policy sees is what ``core.streams.queues.backlog``
counts: waiting plus in service. Ticks come every ``tick_s`` from a random phase.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from audioflow.core.scaling import ScalingMemory, ScalingPolicy, desired_replicas


@dataclass(frozen=True)
class World:
    meetings: int = 8
    period_s: float = 5.0
    jitter_s: float = 0.2
    service_s: float = 0.78  # a 5 s chunk + 1 s overlap at pocketsphinx's ~0.13 RTF
    service_cv: float = 0.3
    startup_s: float = 3.0
    load_s: float = 600.0
    tail_s: float = 300.0  # after the load: time to come back to the minimum
    dt: float = 0.05


@dataclass
class Trace:
    times: list[float] = field(default_factory=list)  # one sample per tick
    replicas: list[int] = field(default_factory=list)
    backlog: list[int] = field(default_factory=list)
    changes: list[tuple[float, int]] = field(default_factory=list)  # (time, new replica count)
    waits: list[float] = field(default_factory=list)  # seconds each chunk waited for a replica
    replica_s: float = 0.0  # replica-seconds spent during the load
    drained_at: float | None = None  # first tick after the load with nothing left
    back_to_min_at: float | None = None

    def changes_during_load(self, load_s: float) -> int:
        return sum(1 for t, _ in self.changes if t <= load_s)


@dataclass
class _Replica:
    ready_at: float
    busy_until: float | None = None
    retiring: bool = False


def _arrivals(world: World, rng: np.random.Generator) -> deque[float]:
    times = [
        k * world.period_s + phase + float(rng.normal(0.0, world.jitter_s))
        for phase in rng.uniform(0.0, world.period_s, world.meetings)
        for k in range(math.ceil(world.load_s / world.period_s))
    ]
    return deque(sorted(t for t in times if 0.0 <= t < world.load_s))


def simulate(policy: ScalingPolicy, tick_s: float, world: World, seed: int) -> Trace:
    rng = np.random.default_rng(seed)
    arrivals = _arrivals(world, rng)
    sigma = math.sqrt(math.log(1 + world.service_cv**2))
    waiting: deque[float] = deque()
    replicas = [_Replica(0.0) for _ in range(policy.min_replicas)]
    current, memory, trace = policy.min_replicas, ScalingMemory(), Trace()
    next_tick = float(rng.uniform(0.0, tick_s))
    t, end = 0.0, world.load_s + world.tail_s
    while t < end:
        t += world.dt
        while arrivals and arrivals[0] <= t:
            waiting.append(arrivals.popleft())
        for r in replicas:
            if r.busy_until is not None and r.busy_until <= t:
                r.busy_until = None
        replicas = [r for r in replicas if not (r.retiring and r.busy_until is None)]
        for r in replicas:
            if waiting and r.busy_until is None and not r.retiring and r.ready_at <= t:
                trace.waits.append(t - waiting.popleft())
                mean = world.service_s
                r.busy_until = t + float(rng.lognormal(math.log(mean) - sigma**2 / 2, sigma))
        if t <= world.load_s:
            trace.replica_s += len(replicas) * world.dt
        if t < next_tick:
            continue
        next_tick += tick_s
        backlog = len(waiting) + sum(1 for r in replicas if r.busy_until is not None)
        desired, memory = desired_replicas(backlog, current, policy, t, memory)
        if desired != current:
            trace.changes.append((t, desired))
            if desired > current:
                replicas += [_Replica(t + world.startup_s) for _ in range(desired - current)]
            else:
                active = [r for r in replicas if not r.retiring]
                active.sort(key=lambda r: r.busy_until is not None)  # idle ones go first
                for r in active[: current - desired]:
                    r.retiring = True
            current = desired
        if t > world.load_s and backlog == 0 and not arrivals and trace.drained_at is None:
            trace.drained_at = t
        if trace.drained_at is not None and current == policy.min_replicas and trace.back_to_min_at is None:
            trace.back_to_min_at = t
        trace.times.append(t)
        trace.replicas.append(current)
        trace.backlog.append(backlog)
    return trace
