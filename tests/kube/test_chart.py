"""The Helm chart (``charts/audioflow``) installed for real: ``helm install``, ``upgrade``, ``test`` and
``uninstall`` against the real API server and kube-controller-manager (``controlplane.py``), as the admin.

What the real control plane proves here and the offline chart tests cannot: the API server accepts every
object the chart renders (with the default values and with the kind values, each release in its own
namespace, both under the ``restricted`` Pod Security Standard, enforced by the API server's admission);
helm's ``lookup`` sees the live Secret and the live CRD (generated secrets are kept on upgrade; a second
release leaves the cluster-wide CRD to the release that owns it); the controller manager turns each
Deployment into a ReplicaSet and Pods, the disruption controller finds each PodDisruptionBudget's Pod, a
changed value rolls a new ReplicaSet while an upgrade that changes nothing rolls none, and the garbage
collector removes the Pods after ``helm uninstall``; the CRD and the data claim stay or go as the keep
policies say.

What is still only proven on real nodes (the kind workflow): Pods stay Pending here (there is no node and
no scheduler), so images, probes, volumes and the security context under a container runtime, Service
routing and DNS are not exercised. ``helm test`` needs its hook Pod to finish: :class:`NodelessKubelet`
plays the kubelet's part for that one Pod (see ``test_helm_test_reports_the_hooks_outcome``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.chart import tools
from tests.integration.stack import make_stack
from tests.kube.conftest import fresh_namespace
from tests.kube.controlplane import ROOT, ControlPlane
from tests.kube.kubelet import NodelessKubelet
from tests.services import eventually, free_port

RELEASE = "af"
CRD = "meetings.audioflow.io"
KIND_VALUES = ROOT / ".github" / "kind" / "values.yaml"
COMPONENTS = ("gateway", "processing", "concat", "operator")
HOOK_SELECTOR = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=test-connection"
Manifest = dict[str, Any]


@dataclass
class Helm:
    """helm 3 (``tests.chart.tools``) with a home of its own, talking to the control plane as the admin."""

    plane: ControlPlane
    home: Path

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.command(*args), capture_output=True, text=True, env=self.env(), timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def command(self, *args: str) -> list[str]:
        return [str(tools.binaries().helm), "--kubeconfig", str(self.plane.admin_kubeconfig), *args]

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBECONFIG", "HELM_"))}
        for part in ("cache", "config", "data"):
            env[f"HELM_{part.upper()}_HOME"] = str(self.home / part)
        return env

    def status(self, namespace: str) -> Manifest:
        found: Manifest = json.loads(self("status", RELEASE, "--namespace", namespace, "-o", "json").stdout)
        return found

    def manifest(self, namespace: str) -> list[Manifest]:
        return tools.load_yaml_all(self("get", "manifest", RELEASE, "--namespace", namespace).stdout)


@dataclass(frozen=True)
class Release:
    namespace: str

    @property
    def fullname(self) -> str:
        """The chart's own Secret and the prefix of every name."""
        return f"{RELEASE}-audioflow"

    def name(self, component: str) -> str:
        return f"{self.fullname}-{component}"


@contextlib.contextmanager
def restricted_namespace(plane: ControlPlane) -> Iterator[str]:
    """A fresh namespace whose Pods the API server admits only under the restricted Pod Security
    Standard (the PodSecurity admission plugin, on by default)."""
    with fresh_namespace(plane) as namespace:
        plane.kubectl(
            "label", "namespace", namespace,
            "pod-security.kubernetes.io/enforce=restricted",
            "pod-security.kubernetes.io/enforce-version=latest",
        )  # fmt: skip
        yield namespace


def delete_crd(plane: ControlPlane) -> None:
    """The cluster without the Meeting CRD (other modules apply it with kubectl; they apply it again)."""
    plane.kubectl("delete", "crd", CRD, "--ignore-not-found", "--wait=true", timeout=120)


@pytest.fixture(scope="module")
def helm(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    delete_crd(control_plane)  # a cluster without audioflow: the first release will own the CRD
    return Helm(control_plane, tmp_path_factory.mktemp("helm-home"))


def install(helm: Helm, namespace: str, *values: str) -> Release:
    helm("install", RELEASE, str(tools.CHART), "--namespace", namespace, *values)  # no --wait: no nodes
    return Release(namespace)


@pytest.fixture(scope="module")
def default_release(helm: Helm, control_plane: ControlPlane) -> Iterator[Release]:
    with restricted_namespace(control_plane) as namespace:
        yield install(helm, namespace)
        helm("uninstall", RELEASE, "--namespace", namespace, check=False)


@pytest.fixture(scope="module")
def kind_release(helm: Helm, control_plane: ControlPlane, default_release: Release) -> Iterator[Release]:
    """The kind values, installed after the default release (which owns the CRD by then)."""
    with restricted_namespace(control_plane) as namespace:
        yield install(helm, namespace, "--values", str(KIND_VALUES))
        helm("uninstall", RELEASE, "--namespace", namespace, check=False)


def live(plane: ControlPlane, manifests: list[Manifest], namespace: str) -> list[Manifest]:
    """The live objects of ``manifests`` (one ``kubectl get -f``: a missing one fails it)."""
    body = json.dumps({"apiVersion": "v1", "kind": "List", "items": manifests})
    result = plane.kubectl("get", "--namespace", namespace, "-f", "-", "-o", "json", input=body)
    items: list[Manifest] = json.loads(result.stdout)["items"]
    return items


def owned_by(plane: ControlPlane, resource: str, namespace: str, owner: Manifest) -> list[Manifest]:
    uid = owner["metadata"]["uid"]
    return [
        item
        for item in plane.items(resource, namespace)
        if any(ref["uid"] == uid for ref in item["metadata"].get("ownerReferences", []))
    ]


def workloads(plane: ControlPlane, release: Release) -> dict[str, tuple[Manifest, Manifest, list[Manifest]]]:
    """component -> (Deployment, its newest ReplicaSet, that ReplicaSet's Pods), once the controller
    manager has made them all."""

    def made() -> dict[str, tuple[Manifest, Manifest, list[Manifest]]] | None:
        found = {}
        for component in COMPONENTS:
            deployment = plane.get("deployment", release.name(component), release.namespace)
            assert deployment is not None, component
            if deployment.get("status", {}).get("observedGeneration") != deployment["metadata"]["generation"]:
                return None
            sets = owned_by(plane, "replicasets", release.namespace, deployment)
            revision = deployment["metadata"].get("annotations", {}).get("deployment.kubernetes.io/revision")
            newest = [
                rs
                for rs in sets
                if rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == revision
            ]
            if not newest:
                return None
            pods = owned_by(plane, "pods", release.namespace, newest[0])
            if len(pods) != newest[0]["spec"]["replicas"] or not pods:
                return None
            found[component] = (deployment, newest[0], pods)
        return found

    return eventually("the controller manager's ReplicaSets and Pods", made)


def crd_ownership(plane: ControlPlane) -> dict[str, str]:
    crd = plane.get("crd", CRD)
    assert crd is not None, "the Meeting CRD is gone"
    annotations: dict[str, str] = crd["metadata"].get("annotations", {})
    return annotations


# ---- install ------------------------------------------------------------------------------------------


def test_default_install(helm: Helm, control_plane: ControlPlane, default_release: Release) -> None:
    namespace = default_release.namespace
    status = helm.status(namespace)
    assert (status["info"]["status"], status["version"]) == ("deployed", 1)
    manifests = helm.manifest(namespace)
    found = live(control_plane, manifests, namespace)
    assert sorted((m["kind"], m["metadata"]["name"]) for m in found) == sorted(
        (m["kind"], m["metadata"]["name"]) for m in manifests
    )
    # The CRD: this release's, kept on uninstall, and served.
    assert crd_ownership(control_plane) == {
        "helm.sh/resource-policy": "keep",
        "meta.helm.sh/release-name": RELEASE,
        "meta.helm.sh/release-namespace": namespace,
    }
    control_plane.kubectl("wait", "--for=condition=Established", f"crd/{CRD}", "--timeout=30s")
    assert control_plane.items("meetings", namespace) == []
    # The controller manager: a ReplicaSet per Deployment, its Pods admitted as restricted, Pending.
    for component, (deployment, replica_set, pods) in workloads(control_plane, default_release).items():
        template = deployment["spec"]["template"]
        assert replica_set["spec"]["template"]["spec"]["containers"] == template["spec"]["containers"]
        for pod in pods:
            assert pod["status"]["phase"] == "Pending", component
            assert pod["spec"]["containers"][0]["image"] == template["spec"]["containers"][0]["image"]
            assert pod["metadata"]["labels"].items() >= template["metadata"]["labels"].items()

    # The disruption controller finds each budget's one Pod.
    def budget(component: str) -> Manifest | None:
        found = control_plane.get("pdb", default_release.name(component), namespace)
        return found if found and found.get("status", {}).get("expectedPods") == 1 else None

    for component in ("gateway", "processing", "concat"):
        pdb = eventually(f"the {component} budget's status", functools.partial(budget, component))
        assert pdb["status"]["disruptionsAllowed"] == 0  # nothing is healthy without nodes
    service = control_plane.get("service", default_release.name("gateway"), namespace)
    assert service is not None and re.fullmatch(r"10\.96\.\d+\.\d+", service["spec"]["clusterIP"])
    # One generated Secret, and the pods' checksum/secret annotation is the checksum of that one.
    checksums = {
        d["spec"]["template"]["metadata"]["annotations"]["checksum/secret"]
        for d, _, _ in workloads(control_plane, default_release).values()
    }
    assert len(checksums) == 1, f"each Deployment hashed another generated Secret: {checksums}"


def test_restricted_pod_security_is_enforced(control_plane: ControlPlane, default_release: Release) -> None:
    """The control for the test above: the namespace's label makes the API server refuse a Pod that
    is not restricted, so the chart's Pods were admitted on their merits."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "root"},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]},
    }
    refused = control_plane.kubectl(
        "create", "--namespace", default_release.namespace, "-f", "-", input=json.dumps(pod), check=False
    )
    assert refused.returncode != 0 and 'violates PodSecurity "restricted:latest"' in refused.stderr


def test_kind_values_install_beside_and_leave_the_crd_alone(
    helm: Helm, control_plane: ControlPlane, default_release: Release, kind_release: Release
) -> None:
    """A second release in another namespace: the cluster-wide CRD is the first release's, so this one
    leaves it alone (Helm's ownership check failed the whole install before the chart looked it up)."""
    namespace = kind_release.namespace
    assert helm.status(namespace)["info"]["status"] == "deployed"
    manifests = helm.manifest(namespace)
    assert not [m for m in manifests if m["kind"] == "CustomResourceDefinition"]
    assert crd_ownership(control_plane)["meta.helm.sh/release-namespace"] == default_release.namespace
    live(control_plane, manifests, namespace)
    claim = control_plane.get("pvc", kind_release.name("data"), namespace)
    assert claim is not None
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "2Gi"
    assert "helm.sh/resource-policy" not in claim["metadata"].get("annotations", {})
    for component, (_, _, pods) in workloads(control_plane, kind_release).items():
        for pod in pods:
            assert {c["imagePullPolicy"] for c in pod["spec"]["containers"]} == {"Never"}, component
    operator = control_plane.get("clusterrole", f"{namespace}-{kind_release.name('operator')}")
    assert operator is not None, "each release's ClusterRole has a name of its own"


# ---- upgrade ------------------------------------------------------------------------------------------


def test_upgrade(helm: Helm, control_plane: ControlPlane, default_release: Release) -> None:
    namespace = default_release.namespace
    before = workloads(control_plane, default_release)
    secret_before = control_plane.get("secret", default_release.fullname, namespace)
    assert secret_before is not None
    # The operator owns the autoscaled workers' replicas (through the scale subresource).
    control_plane.kubectl(
        "scale", "deployment", default_release.name("processing"), "--replicas=3", "-n", namespace
    )

    # An upgrade that changes nothing rolls nothing (no Deployment gets a new generation).
    helm("upgrade", RELEASE, str(tools.CHART), "--namespace", namespace, "--reuse-values")
    assert helm.status(namespace)["version"] == 2
    for component, (deployment, _, _) in before.items():
        now = control_plane.get("deployment", deployment["metadata"]["name"], namespace)
        assert now is not None
        expected = deployment["metadata"]["generation"] + (component == "processing")  # the scale
        assert now["metadata"]["generation"] == expected, f"{component} rolled on an upgrade without changes"

    # A changed value reaches the objects, and the changed configuration rolls the Pods.
    helm(
        "upgrade", RELEASE, str(tools.CHART), "--namespace", namespace, "--reuse-values",
        "--set", "gateway.replicas=2,global.logLevel=DEBUG",
    )  # fmt: skip
    assert helm.status(namespace)["version"] == 3
    config = control_plane.get("configmap", default_release.name("config"), namespace)
    assert config is not None and config["data"]["AUDIOFLOW_LOG_LEVEL"] == "DEBUG"
    after = workloads(control_plane, default_release)
    gateway, replica_set, pods = after["gateway"]
    assert gateway["spec"]["replicas"] == 2
    for component in COMPONENTS:
        old_rs, new_rs = before[component][1], after[component][1]
        assert new_rs["metadata"]["name"] != old_rs["metadata"]["name"], f"{component} did not roll"
        annotations = new_rs["spec"]["template"]["metadata"]["annotations"]
        assert (
            annotations["checksum/config"]
            != old_rs["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        )
    assert replica_set["spec"]["replicas"] >= 1 and pods
    processing = control_plane.get("deployment", default_release.name("processing"), namespace)
    assert processing is not None and processing["spec"]["replicas"] == 3, (
        "an upgrade reset the operator's scale"
    )
    # The generated webhook secret and API token survive both upgrades (helm looked the Secret up).
    secret_after = control_plane.get("secret", default_release.fullname, namespace)
    assert secret_after is not None and secret_after["data"] == secret_before["data"]
    # The release that owns the CRD upgrades it.
    assert any(m["kind"] == "CustomResourceDefinition" for m in helm.manifest(namespace))


# ---- helm test ------------------------------------------------------------------------------------------


@pytest.fixture
def gateway_url(redis_server_url: str, tmp_path: Path) -> Iterator[str]:
    """A real gateway (``audioflow api``) on 127.0.0.1, standing for the Pods the gateway Service selects."""
    stack = make_stack(tmp_path, redis_server_url, f"sqlite:///{tmp_path}/gateway.db", "test-chart:")
    stack.start_api()
    try:
        yield stack.base_url
    finally:
        stack.stop()


def _run_helm_test(
    helm: Helm, control_plane: ControlPlane, release: Release, route_to: str, workdir: Path
) -> tuple[Manifest, int, subprocess.CompletedProcess[str]]:
    """``helm test`` in the background; the hook Pod it creates run by the NodelessKubelet with the
    gateway Service routed to ``route_to``. Returns the Pod, its exit code and helm's result."""
    kubelet = NodelessKubelet(control_plane, release.namespace)
    command = helm.command("test", RELEASE, "--namespace", release.namespace, "--timeout", "2m")
    with subprocess.Popen(
        command, env=helm.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as running:
        try:
            pod = kubelet.wait_for_pending_pod(HOOK_SELECTOR)
            service = control_plane.get("service", release.name("gateway"), release.namespace)
            assert service is not None
            (port,) = service["spec"]["ports"]
            (container,) = pod["spec"]["containers"]
            assert container["command"][0] == "python"  # the image's interpreter: ours stands in
            exit_code = kubelet.run_locally(
                pod,
                image_command=[sys.executable, *container["command"][1:]],
                cwd=workdir,
                timeout=60,
                routes={f"http://{service['metadata']['name']}:{port['port']}": route_to},
            )
            stdout, stderr = running.communicate(timeout=60)
        finally:
            if running.poll() is None:
                running.kill()
    return pod, exit_code, subprocess.CompletedProcess(command, running.returncode, stdout, stderr)


def test_helm_test_reports_the_hooks_outcome(
    helm: Helm, control_plane: ControlPlane, default_release: Release, gateway_url: str, tmp_path: Path
) -> None:
    """``helm test`` creates the chart's test hook, a Pod that asks the gateway's Service for /healthz,
    and waits for the Pod's phase. No node will run it, so the NodelessKubelet does what a kubelet would:
    it runs the Pod's command (python, the hook's own script and arguments) as a local process, with the
    gateway Service's address routed to a real gateway on 127.0.0.1, and writes the exit to pods/status.
    helm then reports that phase: Succeeded while the gateway answers, Failed (and exit 1) when not.

    Checked on the real API server: the hook is admitted under the restricted Pod Security Standard, it
    runs the gateway's image and asks the gateway Service's port, which targets the gateway container's
    port. Not checked here: DNS and Service routing in a cluster, the image's own python."""
    namespace = default_release.namespace
    pod, exit_code, result = _run_helm_test(helm, control_plane, default_release, gateway_url, tmp_path)
    assert exit_code == 0, result.stderr
    assert result.returncode == 0, result.stderr
    assert re.search(r"TEST SUITE:\s+af-audioflow-test-connection", result.stdout)
    assert re.search(r"Phase:\s+Succeeded", result.stdout), result.stdout
    reported = control_plane.get("pod", pod["metadata"]["name"], namespace)
    assert reported is not None and reported["status"]["phase"] == "Succeeded"

    # The hook is the chart's: its annotation, the gateway's image, aimed at the gateway Service.
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["automountServiceAccountToken"] is False
    gateway = control_plane.get("deployment", default_release.name("gateway"), namespace)
    service = control_plane.get("service", default_release.name("gateway"), namespace)
    assert gateway is not None and service is not None
    (hook,) = pod["spec"]["containers"]
    (gateway_container,) = gateway["spec"]["template"]["spec"]["containers"]
    assert hook["image"] == gateway_container["image"]
    assert hook["securityContext"] == gateway_container["securityContext"]
    (port,) = service["spec"]["ports"]
    assert hook["args"] == [f"http://{service['metadata']['name']}:{port['port']}/healthz"]
    assert port["targetPort"] in {p["name"] for p in gateway_container["ports"]}
    assert service["spec"]["selector"].items() <= gateway["spec"]["template"]["metadata"]["labels"].items()

    # Nothing listens there: the script fails, the Pod is Failed, helm test fails.
    closed = f"http://127.0.0.1:{free_port()}"
    again, exit_code, result = _run_helm_test(helm, control_plane, default_release, closed, tmp_path)
    assert again["metadata"]["uid"] != pod["metadata"]["uid"], "a new run replaces the hook Pod"
    assert exit_code != 0
    assert result.returncode != 0
    assert f"pod {again['metadata']['name']} failed" in result.stderr, result.stderr
    assert re.search(r"Phase:\s+Failed", result.stdout), result.stdout


# ---- uninstall ------------------------------------------------------------------------------------------


def _gone(plane: ControlPlane, release: Release, resource: str) -> bool:
    left = plane.items(resource, release.namespace, f"app.kubernetes.io/instance={RELEASE}")
    # helm does not delete hook resources on uninstall: the last test Pod outlives the release.
    return not [o for o in left if "helm.sh/hook" not in o["metadata"].get("annotations", {})]


def test_uninstall_keeps_what_the_chart_says(
    helm: Helm, control_plane: ControlPlane, default_release: Release, kind_release: Release
) -> None:
    # The kind values keep nothing, and the CRD was never theirs.
    result = helm("uninstall", RELEASE, "--namespace", kind_release.namespace)
    assert "kept due to the resource policy" not in result.stdout
    eventually("the kind release's claim to go", lambda: control_plane.get(
        "pvc", kind_release.name("data"), kind_release.namespace) is None)  # fmt: skip
    assert crd_ownership(control_plane)["meta.helm.sh/release-namespace"] == default_release.namespace
    assert (
        control_plane.get("clusterrole", f"{kind_release.namespace}-{kind_release.name('operator')}") is None
    )

    # The defaults keep the CRD (and so every Meeting) and the data claim (and so the recordings).
    namespace = default_release.namespace
    control_plane.kubectl(
        "apply", "--namespace", namespace, "-f", str(ROOT / "examples" / "meeting-minimal.yaml")
    )
    result = helm("uninstall", RELEASE, "--namespace", namespace)
    assert "[CustomResourceDefinition] meetings.audioflow.io" in result.stdout
    assert f"[PersistentVolumeClaim] {default_release.name('data')}" in result.stdout
    assert crd_ownership(control_plane)["helm.sh/resource-policy"] == "keep"
    assert control_plane.get("meeting", "weekly-sync", namespace) is not None
    assert control_plane.get("pvc", default_release.name("data"), namespace) is not None
    # The rest goes: helm deletes the Deployments, the garbage collector their ReplicaSets and Pods.
    for resource in ("deployments", "replicasets", "pods", "services", "secrets", "configmaps"):
        eventually(
            f"its {resource} to go", functools.partial(_gone, control_plane, default_release, resource)
        )
    assert helm("status", RELEASE, "--namespace", namespace, check=False).returncode != 0


def test_without_keep_the_crd_goes_with_its_release(helm: Helm, control_plane: ControlPlane) -> None:
    """The other side of the keep policy: a release that owns the CRD with crds.keep=false (the kind
    values) deletes it, and the API server with it every Meeting."""
    delete_crd(control_plane)
    with restricted_namespace(control_plane) as namespace:
        install(helm, namespace, "--values", str(KIND_VALUES))
        assert crd_ownership(control_plane)["meta.helm.sh/release-namespace"] == namespace
        assert "helm.sh/resource-policy" not in crd_ownership(control_plane)
        control_plane.kubectl("wait", "--for=condition=Established", f"crd/{CRD}", "--timeout=30s")
        helm("uninstall", RELEASE, "--namespace", namespace)
        eventually("the CRD to be deleted", lambda: control_plane.get("crd", CRD) is None)
