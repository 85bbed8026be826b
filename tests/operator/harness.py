"""Helpers for the operator tests: settings, running kopf in-process, objects in the emulator."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import kmock
from kmock import resource as kmock_resource

from audioflow.core.keys import PROCESSING_GROUP
from audioflow.core.scaling import ScalingPolicy
from audioflow.core.settings import Settings
from audioflow.operator import main

T = TypeVar("T")

NAMESPACE = "meetings"
MEETINGS = "audioflow.io/v1alpha1/meetings"
DEPLOYMENTS = "apps/v1/deployments"
JOBS = "batch/v1/jobs"
SECRETS = "v1/secrets"
EVENTS = "v1/events"
VERBS = {"list", "watch", "get", "create", "patch", "update", "delete"}


def declare_resources(emulator: Any) -> None:
    """The resources the emulator must serve: the Meeting CRD's, the CRD and namespace resources
    (without them kopf spawns no watchers), and what the operator touches."""
    info = kmock.ResourceInfo
    emulator.resources[MEETINGS] = info(
        kind="Meeting", singular="meeting", namespaced=True, verbs=VERBS, shortnames={"mtg"},
        subresources={"status"},
    )  # fmt: skip
    emulator.resources["apiextensions.k8s.io/v1/customresourcedefinitions"] = info(
        kind="CustomResourceDefinition", namespaced=False, verbs=VERBS
    )
    emulator.resources["v1/namespaces"] = info(kind="Namespace", namespaced=False, verbs=VERBS)
    emulator.resources[DEPLOYMENTS] = info(
        kind="Deployment", namespaced=True, verbs=VERBS, subresources={"scale", "status"}
    )
    emulator.resources[JOBS] = info(kind="Job", namespaced=True, verbs=VERBS, subresources={"status"})
    emulator.resources[SECRETS] = info(kind="Secret", namespaced=True, verbs=VERBS)
    emulator.resources[EVENTS] = info(kind="Event", namespaced=True, verbs=VERBS)


def kubeconfig(emulator: Any) -> dict[str, Any]:
    """A kubeconfig for the emulator (the operator and kopf log in through ``KUBECONFIG``)."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kmock", "cluster": {"server": str(emulator.url).rstrip("/")}}],
        "users": [{"name": "kmock", "user": {"token": "kmock-token"}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "kmock"}}],
        "current-context": "kmock",
    }


def autoscale_annotations(stream: str, policy: ScalingPolicy) -> dict[str, str]:
    """The annotations that put a worker Deployment under the autoscaler with ``policy``."""
    return {
        "audioflow.io/stream": stream,
        "audioflow.io/group": PROCESSING_GROUP,
        "audioflow.io/min-replicas": str(policy.min_replicas),
        "audioflow.io/max-replicas": str(policy.max_replicas),
        "audioflow.io/target-backlog": str(policy.target_backlog),
        "audioflow.io/scale-down-window-s": f"{policy.scale_down_window_s:g}",
        "audioflow.io/cooldown-s": f"{policy.cooldown_s:g}",
    }


def operator_settings(redis_url: str, prefix: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "redis_prefix": prefix,
        "namespace": NAMESPACE,
        "gateway_url": "http://127.0.0.1:9",  # discard port: nothing answers
        "admin_token": "operator-test-token-0000",
        "autoscale_interval_s": 0.5,
        "status_interval_s": 0.5,
        "retry_delay_s": 0.5,
        "gateway_timeout_s": 2.0,
        "finalizer_timeout_s": 30.0,
        "health_port": 0,
        "simulator_image": "audioflow-workers:test",
        **overrides,
    }
    return Settings(**values)


@contextlib.asynccontextmanager
async def running_operator(conf: Settings) -> AsyncIterator[threading.Thread]:
    """kopf until the block ends, then a graceful stop that must not fail.

    The operator runs in a thread with its own event loop, as ``kopf.testing.KopfRunner`` does: on
    exit, kopf waits for every task of its loop that it did not start with, and in the test's loop
    those would include the emulator's own connection handlers."""
    stop, ready = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def operate() -> None:
        try:
            asyncio.run(main.run(conf, stop_flag=stop, ready_flag=ready))
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=operate, name="kopf-operator", daemon=True)
    thread.start()
    try:
        started = await asyncio.to_thread(ready.wait, 15)
        assert started and not failures, f"the operator did not start: {failures!r}"
        yield thread
        assert thread.is_alive(), f"the operator stopped by itself: {failures!r}"
    finally:
        stop.set()
        await asyncio.to_thread(thread.join, 20)
    assert not thread.is_alive(), "the operator did not stop within 20 s"
    assert not failures, f"the operator failed: {failures!r}"


async def eventually(what: str, check: Callable[[], T | None], within: float = 10.0) -> T:
    """Poll ``check`` (a quick look at the emulator's objects) until it returns something truthy."""
    deadline = time.monotonic() + within
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {within} s waiting for {what} (last: {last!r})")


def meeting_body(name: str, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "audioflow.io/v1alpha1",
        "kind": "Meeting",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "uid": str(uuid.uuid4()),
            "generation": 1,
            "resourceVersion": "1",  # kopf's JSON patches test it; the emulator never bumps it
        },
        "spec": spec if spec is not None else {},
    }


def deployment_body(name: str, replicas: int, annotations: dict[str, str]) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": "audioflow", "app.kubernetes.io/component": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "uid": str(uuid.uuid4()),
            "resourceVersion": "1",
            "labels": {**labels, "audioflow.io/autoscale": "true"},
            "annotations": annotations,
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "worker", "image": "audioflow-workers:test"}]},
            },
        },
    }


async def create(kmock: Any, resource: str, body: dict[str, Any]) -> None:
    group_version, plural = resource.rsplit("/", 1)
    base = f"/api/{group_version}" if group_version == "v1" else f"/apis/{group_version}"
    response = await kmock.post(f"{base}/namespaces/{NAMESPACE}/{plural}", json=body)
    assert response.status < 300, await response.text()


async def delete(kmock: Any, resource: str, name: str) -> None:
    group_version, plural = resource.rsplit("/", 1)
    base = f"/api/{group_version}" if group_version == "v1" else f"/apis/{group_version}"
    response = await kmock.delete(f"{base}/namespaces/{NAMESPACE}/{plural}/{name}")
    assert response.status < 300, await response.text()


def stored(kmock: Any, resource: str, name: str) -> dict[str, Any] | None:
    """The emulator's current object, or None when it does not exist (any more)."""
    key = (kmock_resource(resource), NAMESPACE, name)
    if key not in kmock.objects or kmock.objects[key].deleted:
        return None
    result: dict[str, Any] = kmock.objects[key].raw
    return result


def events_for(kmock: Any, name: str) -> list[dict[str, Any]]:
    found = []
    for (resource, _namespace, _name), obj in kmock.objects.items():
        if resource.plural == "events" and not obj.deleted:
            event = obj.raw
            if event.get("involvedObject", {}).get("name") == name:
                found.append(event)
    return found
