"""The only module that talks to the Kubernetes API.

Credentials come from the ``kubernetes`` library's own loaders (``KUBECONFIG`` when set, else the
pod's service account, else ``~/.kube/config``), and kopf logs in with the very same ones (see
:func:`connection_info` and the login handler in ``main.py``). Requests go through one pooled
``httpx.AsyncClient``: objects are plain dicts in and out, patches say their content type
(``application/merge-patch+json``), and nothing blocks the event loop. (The generated ``kubernetes``
client would need a thread per call, defaults PATCH to JSON-patch and validates responses into strict
models, which partial objects, such as an emulator's answer to ``deployments/scale``, do not pass.)
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import logging
import os
import socket
import ssl
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import kopf
import kubernetes.client
import kubernetes.config

log = logging.getLogger(__name__)

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
MERGE_PATCH = "application/merge-patch+json"
COMPONENT = "audioflow-operator"
EVENT_DEDUP_S = 300.0


class KubeError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class NotFound(KubeError):
    pass


class Conflict(KubeError):
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


def load_configuration() -> kubernetes.client.Configuration:
    """``KUBECONFIG`` if set, else the pod's service account, else ``~/.kube/config``."""
    config = kubernetes.client.Configuration()
    kubeconfig = os.environ.get("KUBECONFIG")
    if kubeconfig:
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, client_configuration=config, persist_config=False
        )
        return config
    try:
        kubernetes.config.load_incluster_config(client_configuration=config)  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            client_configuration=config, persist_config=False
        )
    return config


def _api_key(config: kubernetes.client.Configuration) -> str | None:
    # kubernetes >= 36.0.1 keeps the bearer token under "BearerToken"; older versions under
    # "authorization". Reading it runs the refresh hook (the in-cluster token file is re-read).
    header = config.get_api_key_with_prefix("BearerToken") or config.get_api_key_with_prefix("authorization")
    return header or None


def _authorization(config: kubernetes.client.Configuration) -> str | None:
    if header := _api_key(config):
        return header
    if config.username or config.password:
        basic = base64.b64encode(f"{config.username or ''}:{config.password or ''}".encode()).decode()
        return f"Basic {basic}"
    return None


def connection_info(config: kubernetes.client.Configuration) -> kopf.ConnectionInfo:
    """The same credentials, in the shape kopf's login handlers return."""
    header = _api_key(config)
    scheme, token = None, None
    if header:
        parts = header.split(" ", 1)
        scheme, token = (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])
    return kopf.ConnectionInfo(
        server=config.host,
        ca_path=config.ssl_ca_cert,
        insecure=not config.verify_ssl,
        username=config.username or None,
        password=config.password or None,
        scheme=scheme,
        token=token,
        certificate_path=config.cert_file,
        private_key_path=config.key_file,
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


def _verify(config: kubernetes.client.Configuration) -> ssl.SSLContext | bool:
    if not config.verify_ssl:
        return False
    context = ssl.create_default_context(cafile=config.ssl_ca_cert)
    if config.cert_file:
        context.load_cert_chain(config.cert_file, config.key_file)
    return context


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Kube:
    """One pooled client for the operator's lifetime; ``aclose()`` in cleanup."""

    def __init__(
        self,
        config: kubernetes.client.Configuration,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._config = config
        self._transport = transport
        self._timeout = timeout
        self._client = self._build()
        self._recent_events: dict[tuple[str, ...], float] = {}

    @classmethod
    def from_environment(cls) -> Kube:
        return cls(load_configuration())

    def _build(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self._config.host,
            verify=_verify(self._config),
            timeout=self._timeout,
            transport=self._transport,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: object = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        response = await self._send(method, path, body, params, content_type)
        if response.status_code == 401 and self._transport is None:
            # Credentials from an exec plugin or a rotated token file may have expired: reload once.
            self._config = load_configuration()
            await self._client.aclose()
            self._client = self._build()
            response = await self._send(method, path, body, params, content_type)
        if response.status_code >= 400:
            raise _error(method, path, response)
        if not response.content:
            return {}
        result: dict[str, Any] = response.json()
        return result

    async def _send(
        self,
        method: str,
        path: str,
        body: object,
        params: Mapping[str, str] | None,
        content_type: str,
    ) -> httpx.Response:
        headers = {"accept": "application/json"}
        if (auth := _authorization(self._config)) is not None:
            headers["authorization"] = auth
        if body is not None:
            headers["content-type"] = content_type
        try:
            return await self._client.request(
                method, path, json=body, params=dict(params or {}), headers=headers
            )
        except httpx.TransportError as exc:
            raise KubeUnavailable(0, type(exc).__name__, f"{method} {path}: {exc}") from exc

    # Deployments (the autoscaler) --------------------------------------------------------------------
    async def list_deployments(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        result = await self.request(
            "GET",
            f"/apis/apps/v1/namespaces/{namespace}/deployments",
            params={"labelSelector": label_selector},
        )
        items: list[dict[str, Any]] = result.get("items") or []
        return items

    async def scale_deployment(self, namespace: str, name: str, replicas: int) -> None:
        """Patch ``deployments/scale``; :class:`NotFound` when the Deployment is gone."""
        await self.request(
            "PATCH",
            f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale",
            body={"spec": {"replicas": replicas}},
            content_type=MERGE_PATCH,
        )

    # Meetings and what they own ----------------------------------------------------------------------
    async def delete_meeting(self, namespace: str, name: str) -> None:
        await self.request("DELETE", f"/apis/audioflow.io/v1alpha1/namespaces/{namespace}/meetings/{name}")

    async def secret_keys(self, namespace: str, name: str) -> set[str]:
        """The keys a Secret holds (its values are not kept); :class:`NotFound` when it is missing."""
        secret = await self.request("GET", f"/api/v1/namespaces/{namespace}/secrets/{name}")
        return set(secret.get("data") or {}) | set(secret.get("stringData") or {})

    async def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self.request("GET", f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}")
        except NotFound:
            return None

    async def create_job(self, namespace: str, job: Mapping[str, Any]) -> bool:
        """Create the Job; False when one of that name exists already (idempotent)."""
        try:
            await self.request("POST", f"/apis/batch/v1/namespaces/{namespace}/jobs", body=dict(job))
        except Conflict:
            return False
        return True

    async def delete_job(self, namespace: str, name: str) -> None:
        """Delete a Job and its pods; a Job already gone is fine."""
        with contextlib.suppress(NotFound):
            await self.request(
                "DELETE",
                f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}",
                params={"propagationPolicy": "Background"},
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
            await self.request("POST", f"/api/v1/namespaces/{ref.namespace}/events", body=event)
        except KubeError as exc:
            log.warning("could not record the event %s on %s/%s: %s", reason, ref.kind, ref.name, exc)


def _error(method: str, path: str, response: httpx.Response) -> KubeError:
    reason, message = response.reason_phrase, response.text[:300]
    try:
        status = response.json()
    except ValueError:
        status = None
    if isinstance(status, dict):
        reason = str(status.get("reason") or reason)
        message = str(status.get("message") or message)
    cls = {404: NotFound, 409: Conflict}.get(response.status_code, KubeError)
    return cls(response.status_code, reason, f"{method} {path}: {message}")
