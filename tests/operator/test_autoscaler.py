"""Worker autoscaling: real kopf against kmock's emulator, backlog put into real Redis Streams; scaling over
time is followed pass by pass on an injected clock."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
from prometheus_client import REGISTRY

from audioflow.core.keys import PROCESSING_GROUP, Keys
from audioflow.core.scaling import ScalingPolicy, recommended
from audioflow.core.streams.queues import enqueue, ensure_group
from audioflow.core.work_item import WorkItem
from audioflow.operator.autoscaler import Autoscaler
from tests.operator.fakes import FakeKube
from tests.operator.harness import (
    DEPLOYMENTS,
    NAMESPACE,
    autoscale_annotations,
    create,
    deployment_body,
    events_for,
    eventually,
    operator_settings,
    running_operator,
    stored,
)

pytestmark = pytest.mark.asyncio


def replicas(kmock: Any, name: str) -> int | None:
    obj = stored(kmock, DEPLOYMENTS, name)
    return None if obj is None else int(obj["spec"]["replicas"])


def scale_patches(kmock: Any, name: str) -> list[int]:
    """The replica counts the operator patched into ``deployments/<name>/scale``, in order."""
    return [
        int(request.data["spec"]["replicas"])
        for request in kmock
        if request.method == "PATCH" and request.subresource == "scale" and request.name == name
    ]


def backlog_into(client: redis.Redis, stream: str, entries: int) -> None:
    ensure_group(client, stream, PROCESSING_GROUP)
    for seq in range(entries):
        enqueue(client, stream, WorkItem("m-autoscale", seq).fields())


async def test_backlog_scales_the_deployment_to_the_computed_size(
    emulator: Any, redis_client: redis.Redis, redis_server_url: str, redis_prefix: str
) -> None:
    stream = Keys(redis_prefix).transcribe
    policy = ScalingPolicy(min_replicas=1, max_replicas=5, target_backlog=10)
    ensure_group(redis_client, stream, PROCESSING_GROUP)
    await create(
        emulator, DEPLOYMENTS, deployment_body("processing", 1, autoscale_annotations(stream, policy))
    )
    conf = operator_settings(redis_server_url, redis_prefix)
    async with running_operator(conf):
        await asyncio.sleep(3 * conf.autoscale_interval_s)
        assert scale_patches(emulator, "processing") == []  # no backlog, already at the minimum

        backlog_into(redis_client, stream, 35)
        expected = recommended(35, policy)
        assert expected == 4  # ceil(35 / 10), within [1, 5]
        # Within a few poll intervals (0.5 s here); the bound is generous for a busy machine.
        await eventually("the scale patch", lambda: replicas(emulator, "processing") == expected, within=5)

        assert scale_patches(emulator, "processing") == [expected]
        scaled = [e for e in events_for(emulator, "processing") if e["reason"] == "Scaled"]
        assert len(scaled) == 1
        assert scaled[0]["involvedObject"]["kind"] == "Deployment"
        assert "from 1 to 4 replicas: backlog 35" in scaled[0]["message"]
        assert (
            REGISTRY.get_sample_value("audioflow_operator_desired_replicas", {"deployment": "processing"})
            == 4
        )
        assert (
            REGISTRY.get_sample_value(
                "audioflow_operator_backlog",
                {"deployment": "processing", "stream": stream, "group": PROCESSING_GROUP},
            )
            == 35
        )


async def test_steady_backlog_scales_once_then_down_after_it_drains(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    """Pass by pass on an injected clock (0.5 s between polls, as the operator's interval here), so
    the scale-down window and the cooldown pass without waiting for them."""
    stream = Keys(redis_prefix).transcribe
    policy = ScalingPolicy(
        min_replicas=1, max_replicas=8, target_backlog=10, scale_down_window_s=1, cooldown_s=1
    )
    backlog_into(redis_client, stream, 25)
    kube = FakeKube(
        deployments=[deployment_body("processing", 1, autoscale_annotations(stream, policy))],
        applies_scale=True,
    )
    now = 0.0
    scaler = Autoscaler(kube, redis_client, NAMESPACE, clock=lambda: now)  # type: ignore[arg-type]

    async def polls(count: int) -> None:
        nonlocal now
        for _ in range(count):
            await scaler.tick()
            now += 0.5

    await polls(1)
    assert kube.scaled == [("processing", 3)]
    await polls(6)  # six more polls of the same backlog
    assert kube.scaled == [("processing", 3)]  # no flapping
    assert kube.deployments[0]["spec"]["replicas"] == 3

    # The workers finish: acknowledged and deleted, the backlog is 0; after the scale-down window
    # and the cooldown the Deployment goes back to its minimum, once.
    entries: Any = redis_client.xreadgroup(PROCESSING_GROUP, "worker-1", {stream: ">"}, count=100)
    ids = [entry_id for _, batch in entries for entry_id, _ in batch]
    redis_client.xack(stream, PROCESSING_GROUP, *ids)
    redis_client.xdel(stream, *ids)
    await polls(int((policy.scale_down_window_s + policy.cooldown_s) / 0.5) + 1)
    assert kube.deployments[0]["spec"]["replicas"] == 1
    await polls(3)
    assert kube.scaled == [("processing", 3), ("processing", 1)]


async def test_bad_annotations_are_reported_once_and_left_alone(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    stream = Keys(redis_prefix).transcribe
    backlog_into(redis_client, stream, 50)
    bad = autoscale_annotations(stream, ScalingPolicy())
    bad["audioflow.io/max-replicas"] = "lots"
    good = autoscale_annotations(stream, ScalingPolicy(min_replicas=1, max_replicas=3, target_backlog=10))
    kube = FakeKube(
        deployments=[deployment_body("broken", 2, bad), deployment_body("fine", 1, good)], applies_scale=True
    )
    clock = iter(0.5 * tick for tick in range(100))
    scaler = Autoscaler(kube, redis_client, NAMESPACE, clock=lambda: next(clock))  # type: ignore[arg-type]
    for _ in range(5):  # the first poll and four more
        await scaler.tick()
    assert kube.scaled == [("fine", 3)]
    warnings = [(name, reason, message) for name, type_, reason, message in kube.events if type_ == "Warning"]
    assert [(name, reason) for name, reason, _ in warnings] == [("broken", "BadAutoscaleAnnotations")]
    assert "audioflow.io/max-replicas: 'lots' is not a whole number" in warnings[0][2]
    assert kube.deployments[0]["spec"]["replicas"] == 2
