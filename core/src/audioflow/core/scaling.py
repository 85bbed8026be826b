"""The worker scaling policy, one pure function shared by the Kubernetes operator and the local
supervisor of ``audioflow up``.

``desired = clamp(ceil(backlog / target_backlog), min, max)``, then stabilized like the Kubernetes
HPA: scaling up takes effect at once; scaling down takes the highest recommendation seen within the
window, so a backlog that dips for a moment causes no flapping. Going all the way down to the minimum
additionally waits ``cooldown_s`` after the last non-zero backlog.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ScalingPolicy:
    min_replicas: int = 1
    max_replicas: int = 4
    target_backlog: int = 10
    scale_down_window_s: float = 60.0
    cooldown_s: float = 120.0

    def __post_init__(self) -> None:
        if not 0 <= self.min_replicas <= self.max_replicas:
            raise ValueError(f"need 0 <= min ({self.min_replicas}) <= max ({self.max_replicas})")
        if self.target_backlog < 1:
            raise ValueError("target_backlog must be at least 1")
        if self.scale_down_window_s < 0 or self.cooldown_s < 0:
            raise ValueError("windows must not be negative")


@dataclass(frozen=True)
class ScalingMemory:
    """What the policy remembers between ticks: recent recommendations and the last busy moment."""

    recommendations: tuple[tuple[float, int], ...] = ()
    last_busy: float | None = None


def recommended(backlog: int, policy: ScalingPolicy) -> int:
    wanted = math.ceil(max(0, backlog) / policy.target_backlog)
    return max(policy.min_replicas, min(policy.max_replicas, wanted))


def desired_replicas(
    backlog: int, current: int, policy: ScalingPolicy, now: float, memory: ScalingMemory = ScalingMemory()
) -> tuple[int, ScalingMemory]:
    """The replica count to run now (``current`` is what runs), and the memory for the next call."""
    raw = recommended(backlog, policy)
    last_busy = now if backlog > 0 else memory.last_busy
    # Sliding-window maximum: an older recommendation no higher than the newest can never win again.
    window = [(t, r) for t, r in memory.recommendations if now - t < policy.scale_down_window_s and r > raw]
    window.append((now, raw))
    desired = window[0][1]
    cooling = last_busy is not None and now - last_busy < policy.cooldown_s
    if desired == policy.min_replicas < current and cooling:
        desired = min(current, policy.max_replicas)  # hold until the cooldown after the last backlog
    return desired, ScalingMemory(tuple(window), last_busy)
