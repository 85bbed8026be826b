"""Worker autoscaler: scales the Deployments labelled ``audioflow.io/autoscale: "true"`` from the backlog
of the Redis Stream consumer group they drain.

Each Deployment names its work in annotations (``audioflow.io/stream`` is the full Redis key, e.g.
``af:transcribe``)::

    audioflow.io/stream: af:transcribe        audioflow.io/group: processing
    audioflow.io/min-replicas: "1"            audioflow.io/max-replicas: "8"
    audioflow.io/target-backlog: "10"         audioflow.io/scale-down-window-s: "60"
    audioflow.io/cooldown-s: "120"

Every tick lists them, reads the backlog defensively (:func:`audioflow.core.streams.queues.backlog`), asks
the one scaling policy (:func:`audioflow.core.scaling.desired_replicas`, with a memory per Deployment)
and patches ``deployments/scale`` only when the answer differs from ``spec.replicas``, recording an
Event and a metric. A Deployment deleted meanwhile is skipped quietly; bad annotations are reported
once (log and Event) and that Deployment is left alone until they change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis

from audioflow.core.scaling import ScalingMemory, ScalingPolicy, desired_replicas
from audioflow.core.streams.queues import backlog as stream_backlog
from audioflow.operator import metrics
from audioflow.operator.kube import Kube, KubeError, KubeNotFound, ObjectRef

log = logging.getLogger(__name__)

AUTOSCALE_LABEL = "audioflow.io/autoscale"
SELECTOR = f"{AUTOSCALE_LABEL}=true"
PREFIX = "audioflow.io/"
STREAM = PREFIX + "stream"
GROUP = PREFIX + "group"
MIN_REPLICAS = PREFIX + "min-replicas"
MAX_REPLICAS = PREFIX + "max-replicas"
TARGET_BACKLOG = PREFIX + "target-backlog"
SCALE_DOWN_WINDOW = PREFIX + "scale-down-window-s"
COOLDOWN = PREFIX + "cooldown-s"


class AnnotationError(ValueError):
    """A Deployment's autoscale annotations cannot be used."""


_Number = TypeVar("_Number", int, float)


@dataclass(frozen=True)
class Target:
    name: str
    stream: str
    group: str
    policy: ScalingPolicy


def parse_target(deployment: Mapping[str, Any]) -> Target:
    """Read a Deployment's autoscale annotations; :class:`AnnotationError` names the bad one."""
    meta = deployment.get("metadata") or {}
    annotations: Mapping[str, str] = meta.get("annotations") or {}
    defaults = ScalingPolicy()

    def text(key: str) -> str:
        value = str(annotations.get(key, "")).strip()
        if not value:
            raise AnnotationError(f"{key} is missing")
        return value

    def number(
        key: str, default: _Number, parse: Callable[[str], _Number], what: str, out_of_range: str
    ) -> _Number:
        """The annotation ``key`` read with ``parse`` (``default`` when absent): finite, not below zero."""
        raw = annotations.get(key)
        if raw is None:
            return default
        try:
            value = parse(str(raw).strip())
        except ValueError:
            raise AnnotationError(f"{key}: {raw!r} is not {what}") from None
        if value < 0 or (isinstance(value, float) and not math.isfinite(value)):
            raise AnnotationError(f"{key}: {raw!r} {out_of_range}")
        return value

    def whole(key: str, default: int) -> int:
        return number(key, default, int, "a whole number", "is negative")

    def seconds(key: str, default: float) -> float:
        return number(key, default, float, "a number of seconds", "is not a number of seconds")

    stream, group = text(STREAM), text(GROUP)
    try:
        policy = ScalingPolicy(
            min_replicas=whole(MIN_REPLICAS, defaults.min_replicas),
            max_replicas=whole(MAX_REPLICAS, defaults.max_replicas),
            target_backlog=whole(TARGET_BACKLOG, defaults.target_backlog),
            scale_down_window_s=seconds(SCALE_DOWN_WINDOW, defaults.scale_down_window_s),
            cooldown_s=seconds(COOLDOWN, defaults.cooldown_s),
        )
    except AnnotationError:
        raise
    except ValueError as exc:  # the policy's own checks (min <= max, target >= 1)
        raise AnnotationError(str(exc)) from None
    return Target(str(meta.get("name", "")), stream, group, policy)


@dataclass(frozen=True)
class Decision:
    deployment: str
    backlog: int
    current: int
    desired: int
    scaled: bool


def _replicas(deployment: Mapping[str, Any]) -> tuple[int, int]:
    """(spec.replicas, status.readyReplicas); Kubernetes defaults spec.replicas to 1."""
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    wanted = spec.get("replicas")
    return (1 if wanted is None else int(wanted)), int(status.get("readyReplicas") or 0)


@dataclass
class Autoscaler:
    kube: Kube
    redis: redis.Redis
    namespace: str
    clock: Callable[[], float] = time.monotonic
    memory: dict[str, ScalingMemory] = field(default_factory=dict)
    warned: dict[str, str] = field(default_factory=dict)  # deployment -> the annotations reported
    refused: dict[str, str] = field(default_factory=dict)  # deployment -> the scale refusal reported
    streams: dict[str, tuple[str, str]] = field(default_factory=dict)  # deployment -> gauge labels
    last_tick: float | None = None  # clock() at the end of the last complete pass
    last_pass: float | None = None  # clock() at the end of the last pass, failed or not (liveness)

    async def tick(self) -> list[Decision]:
        """One pass over the labelled Deployments. Kubernetes errors on the listing propagate."""
        now = self.clock()
        deployments = await self.kube.list_deployments(self.namespace, SELECTOR)
        decisions: list[Decision] = []
        seen: set[str] = set()
        for deployment in deployments:
            meta = deployment.get("metadata") or {}
            if (meta.get("labels") or {}).get(AUTOSCALE_LABEL) != "true":
                continue  # the selector did not apply (a server that ignores labelSelector)
            name = str(meta.get("name", ""))
            seen.add(name)
            decision = await self._one(deployment, name, now)
            if decision is not None:
                decisions.append(decision)
        for gone in (set(self.memory) | set(self.streams)) - seen:
            self._forget(gone)
        for gone in set(self.warned) - seen:
            del self.warned[gone]
        for gone in set(self.refused) - seen:
            del self.refused[gone]
        self.last_tick = self.clock()
        return decisions

    async def _one(self, deployment: Mapping[str, Any], name: str, now: float) -> Decision | None:
        try:
            target = parse_target(deployment)
        except AnnotationError as exc:
            await self._report_bad(deployment, name, exc)
            self._forget(name)
            return None
        self.warned.pop(name, None)
        try:
            backlog = await asyncio.to_thread(stream_backlog, self.redis, target.stream, target.group)
        except redis.RedisError as exc:
            log.warning(
                "autoscaler: cannot read the backlog of %s/%s for %s: %s",
                target.stream,
                target.group,
                name,
                exc,
            )
            return None
        current, ready = _replicas(deployment)
        desired, self.memory[name] = desired_replicas(
            backlog, current, target.policy, now, self.memory.get(name, ScalingMemory())
        )
        if self.streams.get(name, (target.stream, target.group)) != (target.stream, target.group):
            self._forget_gauges(name)
        self.streams[name] = (target.stream, target.group)
        metrics.BACKLOG.labels(name, target.stream, target.group).set(backlog)
        metrics.DESIRED_REPLICAS.labels(name).set(desired)
        metrics.ACTUAL_REPLICAS.labels(name).set(ready)
        if desired == current:
            return Decision(name, backlog, current, desired, scaled=False)
        try:
            await self.kube.scale_deployment(self.namespace, name, desired)
        except KubeNotFound:
            log.debug("autoscaler: %s was deleted before it could be scaled", name)
            self._forget(name)
            return None
        except KubeError as exc:
            # Refused for this one (RBAC: not a Deployment of this release; or the server's
            # validation): report it once and go on with the others.
            await self._report_refused(deployment, name, exc)
            return None
        self.refused.pop(name, None)
        direction = "up" if desired > current else "down"
        metrics.SCALING_EVENTS.labels(name, direction).inc()
        message = (
            f"Scaled {direction} from {current} to {desired} replicas: backlog {backlog} on "
            f"{target.stream} (group {target.group}), target {target.policy.target_backlog} per replica"
        )
        log.info("autoscaler: %s: %s", name, message)
        await self.kube.record_event(
            ObjectRef.of(deployment, "apps/v1", "Deployment"), type="Normal", reason="Scaled", message=message
        )
        return Decision(name, backlog, current, desired, scaled=True)

    async def _report_bad(self, deployment: Mapping[str, Any], name: str, exc: AnnotationError) -> None:
        annotations = (deployment.get("metadata") or {}).get("annotations") or {}
        shown = repr(sorted((k, v) for k, v in annotations.items() if str(k).startswith(PREFIX)))
        await self._warn_once(
            self.warned, deployment, name, shown, "BadAutoscaleAnnotations", f"Not autoscaling {name}: {exc}"
        )

    async def _report_refused(self, deployment: Mapping[str, Any], name: str, exc: KubeError) -> None:
        message = f"Cannot scale {name}: {exc.status} {exc.reason}: {exc.message}"
        await self._warn_once(self.refused, deployment, name, str(exc), "ScaleRefused", message)

    async def _warn_once(
        self,
        reported: dict[str, str],
        deployment: Mapping[str, Any],
        name: str,
        key: str,
        reason: str,
        message: str,
    ) -> None:
        """Log and record a Warning Event about a Deployment, once until ``key`` changes."""
        if reported.get(name) == key:
            return
        reported[name] = key
        log.warning("autoscaler: %s", message)
        await self.kube.record_event(
            ObjectRef.of(deployment, "apps/v1", "Deployment"),
            type="Warning",
            reason=reason,
            message=message[:1024],
        )

    def _forget(self, name: str) -> None:
        """Drop what is kept about a Deployment that is gone or no longer scaled."""
        self.memory.pop(name, None)
        self._forget_gauges(name)

    def _forget_gauges(self, name: str) -> None:
        labels = self.streams.pop(name, None)
        with contextlib.suppress(KeyError):
            metrics.DESIRED_REPLICAS.remove(name)
            metrics.ACTUAL_REPLICAS.remove(name)
        if labels is not None:
            with contextlib.suppress(KeyError):
                metrics.BACKLOG.remove(name, *labels)

    async def run(self, interval: float) -> None:
        """Tick every ``interval`` seconds until cancelled; a failed pass is logged and retried."""
        while True:
            started = self.clock()
            try:
                await self.tick()
            except (KubeError, redis.RedisError) as exc:
                metrics.AUTOSCALE_TICKS.labels("error").inc()
                log.warning("autoscaler: pass failed: %s", exc)
            except Exception:
                metrics.AUTOSCALE_TICKS.labels("error").inc()
                log.exception("autoscaler: pass failed unexpectedly")
            else:
                metrics.AUTOSCALE_TICKS.labels("ok").inc()
            self.last_pass = self.clock()
            await asyncio.sleep(max(0.0, interval - (self.clock() - started)))
