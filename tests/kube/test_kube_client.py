"""The operator's Kubernetes client (``audioflow.operator.kube``, on kubernetes_asyncio) against the real
API server: merge-patching ``deployments/scale``, the API server's errors mapped to typed ones, the
Event spam filter, and kopf's login built from the same credentials."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from audioflow.operator.kube import (
    Kube,
    KubeError,
    KubeNotFound,
    KubeUnavailable,
    ObjectRef,
    connection_info,
    load_configuration,
)
from tests.kube.controlplane import ControlPlane, kubeconfig
from tests.services import free_port

pytestmark = pytest.mark.asyncio

DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "processing"},
    "spec": {
        "replicas": 1,
        "selector": {"matchLabels": {"app": "processing"}},
        "template": {
            "metadata": {"labels": {"app": "processing"}},
            "spec": {"containers": [{"name": "worker", "image": "audioflow-workers:test"}]},
        },
    },
}


async def client_for(plane: ControlPlane, monkeypatch: pytest.MonkeyPatch, path: Path | None = None) -> Kube:
    monkeypatch.setenv("KUBECONFIG", str(path or plane.admin_kubeconfig))
    return await Kube.from_environment()


async def test_scale_jobs_secrets_and_errors(
    control_plane: ControlPlane, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    control_plane.apply(DEPLOYMENT, namespace=namespace)
    kube = await client_for(control_plane, monkeypatch)
    try:
        await kube.scale_deployment(namespace, "processing", 3)
        stored = control_plane.get("deployment", "processing", namespace)
        assert stored is not None and stored["spec"]["replicas"] == 3
        listed = await kube.list_deployments(namespace, "app!=nothing")
        assert [d["metadata"]["name"] for d in listed] == ["processing"]
        with pytest.raises(KubeNotFound, match="not found"):
            await kube.scale_deployment(namespace, "gone", 1)
        with pytest.raises(KubeNotFound):
            await kube.secret_keys(namespace, "missing")
        control_plane.kubectl(
            "create", "secret", "generic", "hook", "--namespace", namespace, "--from-literal=webhook-secret=x"
        )
        assert await kube.secret_keys(namespace, "hook") == {"webhook-secret"}

        job = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "sim"},
            "spec": {
                "template": {
                    "spec": {"restartPolicy": "Never", "containers": [{"name": "s", "image": "busy:1"}]}
                }
            },
        }
        assert await kube.get_job(namespace, "sim") is None
        assert await kube.create_job(namespace, job) is True
        assert await kube.create_job(namespace, job) is False  # 409 AlreadyExists: idempotent
        found = await kube.get_job(namespace, "sim")
        assert found is not None and found["metadata"]["name"] == "sim"
        await kube.delete_job(namespace, "sim")
        await kube.delete_job(namespace, "sim")  # already gone (or going): fine
        with pytest.raises(KubeError) as refused:
            await kube.create_job(namespace, {**job, "spec": {}})  # the server's validation
        assert refused.value.status == 422 and refused.value.reason == "Invalid"
    finally:
        await kube.aclose()


async def test_events_are_posted_once_per_spam_window(
    control_plane: ControlPlane, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    kube = await client_for(control_plane, monkeypatch)
    try:
        ref = ObjectRef("apps/v1", "Deployment", namespace, "processing", "uid-1")
        for _ in range(3):
            await kube.record_event(ref, type="Normal", reason="Scaled", message="1 -> 3")
        await kube.record_event(ref, type="Normal", reason="Scaled", message="3 -> 1")
    finally:
        await kube.aclose()
    events = control_plane.items("events", namespace)
    assert sorted(e["message"] for e in events) == ["1 -> 3", "3 -> 1"]
    involved = events[0]["involvedObject"]
    assert (involved["kind"], involved["name"], involved["uid"]) == ("Deployment", "processing", "uid-1")
    assert events[0]["source"]["component"] == "audioflow-operator"


async def test_unreachable_server_and_refused_token(
    control_plane: ControlPlane, namespace: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    nowhere = tmp_path / "nowhere.kubeconfig"
    nowhere.write_text(
        json.dumps(kubeconfig(f"https://127.0.0.1:{free_port()}", control_plane.pki.ca_cert, {"token": "x"}))
    )
    kube = await client_for(control_plane, monkeypatch, nowhere)
    try:
        with pytest.raises(KubeUnavailable):
            await kube.list_deployments(namespace, "a=b")
    finally:
        await kube.aclose()
    forged = tmp_path / "forged.kubeconfig"
    forged.write_text(
        json.dumps(kubeconfig(control_plane.server, control_plane.pki.ca_cert, {"token": "not-a-token"}))
    )
    kube = await client_for(control_plane, monkeypatch, forged)
    try:
        with pytest.raises(KubeError) as refused:
            await kube.list_deployments(namespace, "a=b")
        assert refused.value.status == 401
    finally:
        await kube.aclose()


async def test_kopf_logs_in_with_the_same_token(
    control_plane: ControlPlane, namespace: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = control_plane.kubeconfig_for("default", namespace, tmp_path / "sa.kubeconfig")
    monkeypatch.setenv("KUBECONFIG", str(path))
    info = await connection_info(await load_configuration())
    assert info.server == control_plane.server
    assert info.scheme == "Bearer" and info.token and info.token.count(".") == 2  # a signed JWT
    assert info.ca_path
    given, expected = await asyncio.gather(
        asyncio.to_thread(Path(str(info.ca_path)).read_bytes),
        asyncio.to_thread(control_plane.pki.ca_cert.read_bytes),
    )
    assert given == expected
