"""Every kopf reaction of the operator, in one place. The decorated functions are adapters: they unpack
kopf's keyword arguments, call a plain function (``handlers``, ``autoscaler``) and map its typed errors
to kopf's retries.

The registry is built from settings parsed beforehand (:func:`create_registry`), so that intervals
given in the environment reach the decorators. Run it with ``audioflow operator`` (:func:`run`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any, Protocol, Unpack

import kopf

from audioflow.core.redis_client import redis_client
from audioflow.core.settings import Settings
from audioflow.operator import kube, meeting, simulator
from audioflow.operator.autoscaler import Autoscaler
from audioflow.operator.gateway import Gateway, GatewayError, GatewayUnavailable
from audioflow.operator.metrics import RECONCILE_ERRORS, RECONCILE_SECONDS
from audioflow.operator.model import GROUP, PLURAL, VERSION, FormatConflict, InvalidSpec

log = logging.getLogger(__name__)

MEETINGS = (GROUP, VERSION, PLURAL)
FINALIZER = "audioflow.io/finalizer"


@contextlib.asynccontextmanager
async def _adapted(
    handler: str, retry_delay: float, client: kube.Kube, body: kopf.Body
) -> AsyncIterator[None]:
    """Time the call; map typed errors to kopf's: temporary ones retry after ``retry_delay`` (longer
    when the gateway rejected the request), an unusable spec is permanent. (The handlers have set
    the conditions and Events for those.) Anything else is a bug: an Event says so, kopf retries."""
    started = time.perf_counter()
    try:
        yield
    except InvalidSpec as exc:
        RECONCILE_ERRORS.labels(handler, exc.reason).inc()
        raise kopf.PermanentError(str(exc)) from exc
    except GatewayUnavailable as exc:
        RECONCILE_ERRORS.labels(handler, exc.reason).inc()
        raise kopf.TemporaryError(str(exc), delay=retry_delay) from exc
    except (GatewayError, FormatConflict) as exc:
        RECONCILE_ERRORS.labels(handler, exc.reason).inc()
        raise kopf.TemporaryError(str(exc), delay=retry_delay * 6) from exc
    except (simulator.SimulatorSecretMissing, kube.KubeError) as exc:
        RECONCILE_ERRORS.labels(handler, type(exc).__name__).inc()
        raise kopf.TemporaryError(str(exc), delay=retry_delay) from exc
    except Exception as exc:
        RECONCILE_ERRORS.labels(handler, type(exc).__name__).inc()
        await client.record_event(
            kube.ObjectRef.of(body),
            type="Warning",
            reason="ReconcileFailed",
            message=f"{handler}: {type(exc).__name__}: {exc}",
        )
        raise
    finally:
        RECONCILE_SECONDS.labels(handler).observe(time.perf_counter() - started)


class _StatusHandler(Protocol):
    def __call__(self, **call: Unpack[meeting.StatusCall]) -> Awaitable[None]: ...


async def _write_status(
    handler: str,
    run: _StatusHandler,
    conf: Settings,
    /,
    *,
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    patch: kopf.Patch,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    """Adapt kopf's call of a Meeting handler that writes ``status`` (the same keyword arguments for
    both: the decorated functions keep their own names, which are kopf's handler ids)."""
    async with _adapted(handler, conf.retry_delay_s, memo.kube, body):
        await run(
            body=body,
            spec=spec,
            status=status,
            gateway=memo.gateway,
            kube=memo.kube,
            settings=conf,
            patch=patch,
            logger=logger,
        )


def create_registry(conf: Settings, namespace: str) -> kopf.OperatorRegistry:
    """All of the operator's reactions, for ``conf`` and the watched ``namespace``."""
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        # Watches can freeze silently (nolar/kopf#585, #957, #1276): let the server end them and
        # give up on the client side a little later; kopf then re-lists and watches again.
        settings.watching.server_timeout = conf.watch_timeout_s
        settings.watching.client_timeout = conf.watch_timeout_s + 30
        settings.watching.connect_timeout = 30
        # One namespace, known in advance: no cluster-wide scanning of namespaces and CRDs, so the
        # operator needs no ClusterRole (resources are discovered once at startup).
        settings.scanning.disabled = True
        # Events are posted by kube.Kube, once per condition change (and spam-filtered); kopf would
        # also post one per log line at its level, i.e. per retry of a failing handler.
        settings.posting.enabled = False
        # kopf's bookkeeping stays in our annotations and finalizer; status holds only declared fields.
        settings.persistence.finalizer = FINALIZER
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="audioflow.io")
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix="audioflow.io", key="last-handled-configuration"
        )

        memo.conf = conf
        # The operator creates, ends and deletes meetings: the admin token (which also reads).
        token = conf.admin_token.get_secret_value() if conf.admin_token else None
        memo.gateway = Gateway(conf.gateway_url, token, timeout=conf.gateway_timeout_s)
        memo.kube = await kube.Kube.from_environment()
        memo.redis = redis_client(conf.redis_url, socket_timeout=10, socket_connect_timeout=5)
        memo.autoscaler = Autoscaler(memo.kube, memo.redis, namespace)
        memo.autoscaling = asyncio.create_task(
            memo.autoscaler.run(conf.autoscale_interval_s), name="audioflow autoscaler"
        )
        memo.started = time.monotonic()
        log.info(
            "operator: namespace %s, gateway %s, autoscaling every %g s",
            namespace,
            conf.gateway_url,
            conf.autoscale_interval_s,
        )

    @kopf.on.cleanup(registry=registry)
    async def cleanup(memo: kopf.Memo, **_: Any) -> None:
        task: asyncio.Task[None] | None = memo.get("autoscaling")
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if memo.get("gateway") is not None:
            await memo.gateway.aclose()
        if memo.get("kube") is not None:
            await memo.kube.aclose()
        if memo.get("redis") is not None:
            memo.redis.close()

    @kopf.on.login(registry=registry)
    async def login(**_: Any) -> kopf.ConnectionInfo:
        # The same credentials as kube.Kube's: KUBECONFIG, else the service account, else ~/.kube/config.
        return await kube.connection_info(await kube.load_configuration())

    @kopf.on.probe(id="autoscaler", registry=registry)
    def autoscaler_alive(memo: kopf.Memo, **_: Any) -> dict[str, Any]:
        """Liveness: the autoscaler loop runs and has finished a pass recently (a pass that failed,
        say on an API server outage, counts: restarting would not help; a stuck loop does not)."""
        task: asyncio.Task[None] = memo.autoscaling
        if task.done():
            raise RuntimeError("the autoscaler loop has stopped")
        now = time.monotonic()
        last: float | None = memo.autoscaler.last_pass
        allowed = max(60.0, 10 * conf.autoscale_interval_s)
        age = now - (last if last is not None else memo.started)
        if age > allowed:
            raise RuntimeError(f"the autoscaler has not completed a pass for {age:.0f} s")
        return {"last_pass_age_s": round(age, 1) if last is not None else None}

    @kopf.on.resume(*MEETINGS, registry=registry)
    @kopf.on.create(*MEETINGS, registry=registry)
    @kopf.on.update(*MEETINGS, field="spec", registry=registry)
    async def reconcile(**kwargs: Any) -> None:
        await _write_status("reconcile", meeting.reconcile_meeting, conf, **kwargs)

    @kopf.timer(*MEETINGS, interval=conf.status_interval_s, registry=registry)
    async def mirror(**kwargs: Any) -> None:
        await _write_status("status", meeting.mirror_status, conf, **kwargs)

    @kopf.on.delete(*MEETINGS, registry=registry)
    async def finalize(
        body: kopf.Body,
        spec: kopf.Spec,
        memo: kopf.Memo,
        logger: kopf.Logger,
        runtime: Any,
        **_: Any,
    ) -> None:
        async with _adapted("delete", conf.retry_delay_s, memo.kube, body):
            await meeting.finalize_meeting(
                body=body,
                spec=spec,
                gateway=memo.gateway,
                kube=memo.kube,
                settings=conf,
                logger=logger,
                elapsed_s=runtime.total_seconds(),
            )

    return registry


async def run(
    conf: Settings,
    *,
    liveness_endpoint: str | None = None,
    stop_flag: asyncio.Event | threading.Event | None = None,
    ready_flag: asyncio.Event | threading.Event | None = None,
) -> None:
    """Run the operator on the configured (or its own) namespace until stopped (SIGTERM, or
    ``stop_flag``). Standalone: one replica, deployed with ``strategy: Recreate``."""
    namespace = kube.own_namespace(conf.namespace)
    await kopf.operator(
        registry=create_registry(conf, namespace),
        namespaces=[namespace],
        standalone=True,
        liveness_endpoint=liveness_endpoint,
        stop_flag=stop_flag,
        ready_flag=ready_flag,
        memo=kopf.Memo(),
    )
