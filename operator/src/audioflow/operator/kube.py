"""The only module that talks to the Kubernetes API, through ``kubernetes_asyncio`` (the generated
client, on aiohttp: nothing blocks the event loop).

Credentials come from the library's own loaders (``KUBECONFIG`` when set, else the pod's service
account, else ``~/.kube/config``); the in-cluster loader re-reads the rotated token file by itself.
kopf logs in with the very same credentials (see :func:`connection_info` and the login handler in
``main.py``). Objects are plain dicts in and out: answers are read as JSON (``_preload_content=False``)
rather than into the generated models, and the scale patch says its content type (merge patch).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import aiohttp
import kopf
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

log = logging.getLogger(__name__)

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
MERGE_PATCH = "application/merge-patch+json"
COMPONENT = "audioflow-operator"
EVENT_DEDUP_S = 300.0
MEETINGS = ("audioflow.io", "v1alpha1", "meetings")


class KubeError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class KubeNotFound(KubeError):
    pass


class KubeConflict(KubeError):
    pass


class KubeUnavailable(KubeError):
    """The API server could not be reached."""


@dataclass(frozen=True)
class ObjectRef:
    """What an Event points at. (Items of a list response carry no apiVersion/kind; name them here.)"""

    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str | None = None

    @classmethod
    def of(
        cls, body: Mapping[str, Any], api_version: str | None = None, kind: str | None = None
    ) -> ObjectRef:
        meta = body.get("metadata", {})
        return cls(
            api_version=api_version or str(body.get("apiVersion", "")),
            kind=kind or str(body.get("kind", "")),
            namespace=str(meta.get("namespace", "")),
            name=str(meta.get("name", "")),
            uid=meta.get("uid"),
        )


async def load_configuration() -> client.Configuration:
    """``KUBECONFIG`` if set, else the pod's service account, else ``~/.kube/config``."""
    configuration = client.Configuration()
    kubeconfig = os.environ.get("KUBECONFIG")
    if kubeconfig:
        await config.load_kube_config(
            config_file=kubeconfig, client_configuration=configuration, persist_config=False
        )
        return configuration
    try:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except config.ConfigException:
        await config.load_kube_config(client_configuration=configuration, persist_config=False)
    return configuration


async def connection_info(configuration: client.Configuration) -> kopf.ConnectionInfo:
    """The same credentials, in the shape kopf's login handlers return. (Reading the key runs the
    refresh hook, so a rotated in-cluster token is picked up at each login.)"""
    header = await configuration.get_api_key_with_prefix("BearerToken", alias="authorization")
    scheme, token = None, None
    if header:
        parts = header.split(" ", 1)
        scheme, token = (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])
    return kopf.ConnectionInfo(
        server=str(configuration.host),
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        username=configuration.username or None,
        password=configuration.password or None,
        scheme=scheme,
        token=token,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
    )


def own_namespace(configured: str | None) -> str:
    """The namespace to watch: the configured one, else the pod's own, else ``default``."""
    if configured:
        return configured
    path = SERVICE_ACCOUNT / "namespace"
    if path.is_file():
        found = path.read_text().strip()
        if found:
            return found
    return "default"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _error(status: int, reason: str, body: bytes | str | None, what: str) -> KubeError:
    """The API server's Status (reason, message) as a typed error."""
    message = (body.decode(errors="replace") if isinstance(body, bytes) else str(body or ""))[:300]
    with contextlib.suppress(ValueError, TypeError):
        status_body = json.loads(body or b"")
        if isinstance(status_body, dict):
            reason = str(status_body.get("reason") or reason)
            message = str(status_body.get("message") or message)
    cls = {404: KubeNotFound, 409: KubeConflict}.get(status, KubeError)
    return cls(status, reason, f"{what}: {message}")


async def _send(what: str, request: Awaitable[Any]) -> dict[str, Any]:
    """Await a generated-client call made with ``_preload_content=False``; its JSON body as a dict, or
    a :class:`KubeError` of the right kind. (Without preloading the client checks no status itself.)"""
    try:
        response = await request
        try:
            body = await response.read()
        finally:
            response.release()
    except ApiException as exc:
        raise _error(int(exc.status or 0), str(exc.reason or ""), exc.body, what) from exc
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise KubeUnavailable(0, type(exc).__name__, f"{what}: {exc}") from exc
    if not 200 <= response.status < 300:
        raise _error(response.status, str(response.reason or ""), body, what)
    data: dict[str, Any] = json.loads(body) if body else {}
    return data


class Kube:
    """One pooled client for the operator's lifetime; ``aclose()`` in cleanup."""

    def __init__(self, configuration: client.Configuration, *, timeout: float = 30.0) -> None:
        self._api = client.ApiClient(configuration)
        # Every call reads the raw answer (dicts, not generated models) with a deadline.
        self._raw: dict[str, Any] = {"_preload_content": False, "_request_timeout": timeout}
        self._apps = client.AppsV1Api(self._api)
        self._batch = client.BatchV1Api(self._api)
        self._core = client.CoreV1Api(self._api)
        self._custom = client.CustomObjectsApi(self._api)
        self._recent_events: dict[tuple[str, ...], float] = {}

    @classmethod
    async def from_environment(cls) -> Kube:
        return cls(await load_configuration())

    async def aclose(self) -> None:
        await self._api.close()

    # Deployments (the autoscaler) --------------------------------------------------------------------
    async def list_deployments(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        answer = await _send(
            f"list deployments in {namespace}",
            self._apps.list_namespaced_deployment(namespace, label_selector=label_selector, **self._raw),
        )
        items: list[dict[str, Any]] = answer.get("items") or []
        return items

    async def scale_deployment(self, namespace: str, name: str, replicas: int) -> None:
        """Patch ``deployments/scale``; :class:`KubeNotFound` when the Deployment is gone."""
        # The generated client would send a JSON patch; _content_type (absent from its stubs) says merge.
        merge: dict[str, Any] = {"_content_type": MERGE_PATCH, **self._raw}
        await _send(
            f"scale deployment {namespace}/{name}",
            self._apps.patch_namespaced_deployment_scale(
                name, namespace, {"spec": {"replicas": replicas}}, **merge
            ),
        )

    # Meetings and what they own ----------------------------------------------------------------------
    async def delete_meeting(self, namespace: str, name: str) -> None:
        group, version, plural = MEETINGS
        await _send(
            f"delete meeting {namespace}/{name}",
            self._custom.delete_namespaced_custom_object(
                group, version, namespace, plural, name, **self._raw
            ),
        )

    async def secret_keys(self, namespace: str, name: str) -> set[str]:
        """The keys a Secret holds (its values are not kept); :class:`KubeNotFound` when it is missing."""
        secret = await _send(
            f"get secret {namespace}/{name}", self._core.read_namespaced_secret(name, namespace, **self._raw)
        )
        return set(secret.get("data") or {}) | set(secret.get("stringData") or {})

    async def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await _send(
                f"get job {namespace}/{name}", self._batch.read_namespaced_job(name, namespace, **self._raw)
            )
        except KubeNotFound:
            return None

    async def create_job(self, namespace: str, job: Mapping[str, Any]) -> bool:
        """Create the Job; False when one of that name exists already (idempotent)."""
        try:
            await _send(
                f"create job in {namespace}",
                self._batch.create_namespaced_job(namespace, cast(Any, dict(job)), **self._raw),
            )
        except KubeConflict:
            return False
        return True

    async def delete_job(self, namespace: str, name: str) -> None:
        """Delete a Job and its pods; a Job already gone is fine."""
        with contextlib.suppress(KubeNotFound):
            await _send(
                f"delete job {namespace}/{name}",
                self._batch.delete_namespaced_job(
                    name, namespace, propagation_policy="Background", **self._raw
                ),
            )

    # Events --------------------------------------------------------------------------------------------
    async def record_event(self, ref: ObjectRef, *, type: str, reason: str, message: str) -> None:
        """Post a core/v1 Event about ``ref``. Best effort: a failure is logged, never raised.

        The same event about the same object within :data:`EVENT_DEDUP_S` is posted once (like
        client-go's spam filter): a handler and a timer that see the same failure at once, or the
        retries of a handler, do not repeat it."""
        key = (ref.uid or f"{ref.namespace}/{ref.kind}/{ref.name}", type, reason, message)
        moment = time.monotonic()
        if moment - self._recent_events.get(key, -EVENT_DEDUP_S) < EVENT_DEDUP_S:
            return
        if len(self._recent_events) > 1000:
            self._recent_events = {k: t for k, t in self._recent_events.items() if moment - t < EVENT_DEDUP_S}
        self._recent_events[key] = moment
        now = _now()
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{ref.name}.{uuid.uuid4().hex[:16]}", "namespace": ref.namespace},
            "involvedObject": {
                "apiVersion": ref.api_version,
                "kind": ref.kind,
                "namespace": ref.namespace,
                "name": ref.name,
                **({"uid": ref.uid} if ref.uid else {}),
            },
            "type": type,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": socket.gethostname()[:128],
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await _send(
                f"create event in {ref.namespace}",
                self._core.create_namespaced_event(ref.namespace, cast(Any, event), **self._raw),
            )
        except KubeError as exc:
            log.warning("could not record the event %s on %s/%s: %s", reason, ref.kind, ref.name, exc)
