"""The scaling policy: bounds, monotonicity, stabilization and cooldown."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audioflow.core.scaling import ScalingMemory, ScalingPolicy, desired_replicas, recommended

POLICY = ScalingPolicy(
    min_replicas=1, max_replicas=5, target_backlog=10, scale_down_window_s=30, cooldown_s=60
)


@pytest.mark.parametrize(
    ("backlog", "expected"), [(0, 1), (1, 1), (10, 1), (11, 2), (45, 5), (10_000, 5), (-3, 1)]
)
def test_recommended_is_ceil_of_backlog_over_target_clamped(backlog: int, expected: int) -> None:
    assert recommended(backlog, POLICY) == expected


policies = st.builds(
    lambda lo, span, target, window, cooldown: ScalingPolicy(lo, lo + span, target, window, cooldown),
    st.integers(0, 5),
    st.integers(0, 10),
    st.integers(1, 50),
    st.floats(0, 300),
    st.floats(0, 300),
)
ticks = st.lists(st.tuples(st.integers(0, 2000), st.floats(0.1, 30)), min_size=1, max_size=40)


@given(policies, ticks)
def test_bounds_are_always_respected(policy: ScalingPolicy, steps: list[tuple[int, float]]) -> None:
    memory, now, current = ScalingMemory(), 0.0, policy.min_replicas
    for backlog, dt in steps:
        now += dt
        current, memory = desired_replicas(backlog, current, policy, now, memory)
        assert policy.min_replicas <= current <= policy.max_replicas


@given(policies, st.integers(0, 5000), st.integers(0, 5000))
def test_monotone_in_backlog(policy: ScalingPolicy, a: int, b: int) -> None:
    low, high = sorted((a, b))
    assert recommended(low, policy) <= recommended(high, policy)
    assert (
        desired_replicas(low, policy.min_replicas, policy, 0.0)[0]
        <= desired_replicas(high, policy.min_replicas, policy, 0.0)[0]
    )


@given(policies, st.integers(1, 5000), st.floats(0.1, 10))
def test_scale_down_waits_for_the_window(policy: ScalingPolicy, backlog: int, dt: float) -> None:
    high, memory = desired_replicas(backlog, policy.min_replicas, policy, 0.0)
    now = 0.0
    while now + dt < policy.scale_down_window_s:
        now += dt
        current, memory = desired_replicas(0, high, policy, now, memory)
        assert current == high  # the backlog vanished, but the window still remembers it


def test_steady_backlog_does_not_flap() -> None:
    memory, current, changes = ScalingMemory(), 1, 0
    for tick in range(600):  # ten minutes at one tick per second, backlog wobbling around 25
        backlog = 25 + (7 if tick % 3 == 0 else -7)
        new, memory = desired_replicas(backlog, current, POLICY, float(tick), memory)
        changes += new != current
        current = new
    assert changes == 1 and current == 4


def test_cooldown_holds_replicas_before_the_minimum() -> None:
    current, memory = desired_replicas(40, 1, POLICY, 0.0)
    assert current == 4
    current, memory = desired_replicas(0, current, POLICY, 40.0, memory)  # window passed, cooldown not
    assert current == 4
    current, memory = desired_replicas(0, current, POLICY, 61.0, memory)
    assert current == 1


def test_a_tiny_backlog_at_the_minimum_stays_at_the_minimum() -> None:
    memory, current = ScalingMemory(), 1
    for tick in range(100):
        current, memory = desired_replicas(tick % 2, current, POLICY, float(tick), memory)
        assert current == 1


def test_invalid_policies_are_refused() -> None:
    with pytest.raises(ValueError, match="min"):
        ScalingPolicy(min_replicas=3, max_replicas=2)
    with pytest.raises(ValueError, match="target_backlog"):
        ScalingPolicy(target_backlog=0)
