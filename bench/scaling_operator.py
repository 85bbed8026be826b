"""The operator's autoscaler (real kopf, in-process) against kmock's Kubernetes emulator and a real Redis
stream, for the scaling section: the emulator set up as the operator tests set it up, a Deployment
annotated for autoscaling, backlogs put into the stream and drained, the scale PATCHes timed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kmock
import redis

from audioflow.core.keys import PROCESSING_GROUP, Keys
from audioflow.core.scaling import ScalingPolicy, recommended
from audioflow.core.streams.queues import ensure_group
from bench.common import Unmeasured
from tests.operator.harness import (
    DEPLOYMENTS,
    autoscale_annotations,
    create,
    declare_resources,
    deployment_body,
    operator_settings,
    running_operator,
    stored,
)
from tests.operator.harness import kubeconfig as harness_kubeconfig

NAME = "processing"


@dataclass(frozen=True)
class Cycle:
    reaction_s: float  # backlog appeared -> deployments/scale patched to the computed size
    back_to_min_s: float  # backlog drained -> patched back to the minimum


@contextlib.asynccontextmanager
async def emulator() -> AsyncIterator[Any]:
    """kmock's emulator serving the resources the operator uses, and KUBECONFIG pointing at it."""
    async with kmock.KubernetesEmulator() as k8s, kmock.Server(k8s):
        declare_resources(k8s)
        saved = {key: os.environ.get(key) for key in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
        with tempfile.TemporaryDirectory(prefix="afbench-kube-") as folder:
            kubeconfig = Path(folder) / "kubeconfig"
            kubeconfig.write_text(json.dumps(harness_kubeconfig(k8s)))
            os.environ["KUBECONFIG"] = str(kubeconfig)
            os.environ.pop("KUBERNETES_SERVICE_HOST", None)
            try:
                yield k8s
            finally:
                for key, value in saved.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value


def _replicas(k8s: Any) -> int | None:
    obj = stored(k8s, DEPLOYMENTS, NAME)
    return None if obj is None else int(obj["spec"]["replicas"])


async def _until(what: str, check: Callable[[], bool], timeout_s: float) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return time.monotonic()
        await asyncio.sleep(0.005)
    raise Unmeasured(f"operator: {what} did not happen within {timeout_s:.0f} s")


def _backlog_into(client: redis.Redis, stream: str, entries: int) -> None:
    pipe = client.pipeline(transaction=True)
    for seq in range(entries):
        pipe.xadd(stream, {"meeting_id": "m-autoscale", "seq": seq})
    pipe.execute()


def _drain(client: redis.Redis, stream: str) -> None:
    """What finished workers leave behind: everything read, acknowledged and deleted."""
    got: Any = client.xreadgroup(PROCESSING_GROUP, "bench-worker", {stream: ">"}, count=10_000)
    ids = [entry_id for _, batch in got for entry_id, _ in batch]
    if ids:
        client.xack(stream, PROCESSING_GROUP, *ids)
        client.xdel(stream, *ids)


async def _cycles(
    redis_url: str, prefix: str, policy: ScalingPolicy, interval_s: float, repeats: int
) -> list[Cycle]:
    stream = Keys(prefix).transcribe
    entries = policy.target_backlog * (policy.max_replicas - 1) + 1  # the least that asks for the max
    expected = recommended(entries, policy)
    client = redis.Redis.from_url(redis_url)
    cycles: list[Cycle] = []
    try:
        ensure_group(client, stream, PROCESSING_GROUP)
        async with emulator() as k8s:
            annotations = autoscale_annotations(stream, policy)
            await create(k8s, DEPLOYMENTS, deployment_body(NAME, policy.min_replicas, annotations))
            conf = operator_settings(redis_url, prefix, autoscale_interval_s=interval_s)
            async with running_operator(conf):
                await asyncio.sleep(interval_s)  # a first tick on an empty stream
                rng = random.Random(5)
                for _ in range(repeats):
                    # at a random moment of the tick: the previous cycle ended right after one
                    await asyncio.sleep(rng.uniform(0, interval_s))
                    _backlog_into(client, stream, entries)
                    appeared = time.monotonic()
                    patched = await _until(
                        "the scale-up patch", lambda: _replicas(k8s) == expected, 30 + 3 * interval_s
                    )
                    await asyncio.sleep(rng.uniform(0, interval_s))  # workers finish whenever they do
                    _drain(client, stream)
                    drained = time.monotonic()
                    timeout = policy.cooldown_s + policy.scale_down_window_s + 5 * interval_s + 30
                    back = await _until(
                        "the patch back to the minimum",
                        lambda: _replicas(k8s) == policy.min_replicas,
                        timeout,
                    )
                    cycles.append(Cycle(patched - appeared, back - drained))
    finally:
        client.close()
    return cycles


def run_operator(
    redis_url: str, prefix: str, policy: ScalingPolicy, interval_s: float, repeats: int
) -> list[Cycle]:
    return asyncio.run(_cycles(redis_url, prefix, policy, interval_s, repeats))
