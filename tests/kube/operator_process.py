"""``audioflow operator`` (the command the operator image runs) as a local process against the real API
server, logged in as the chart's own operator ServiceAccount with a TokenRequest token, so every call
it makes is authorized by the chart's Role exactly as in a cluster."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.chart import tools
from tests.kube.controlplane import ROOT, ControlPlane
from tests.services import free_port

RELEASE = "af"
CRD = ROOT / "crds" / "meeting.yaml"


def render_chart(
    namespace: str, *templates: str, values: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The chart's manifests (``templates/…`` paths) for release :data:`RELEASE` in ``namespace``."""
    args = [str(tools.binaries().helm), "template", RELEASE, str(tools.CHART), "--namespace", namespace]
    for template in templates:
        args += ["--show-only", template]
    for key, value in (values or {}).items():
        args += ["--set-json", f"{key}={json.dumps(value)}"]
    result = subprocess.run(args, capture_output=True, text=True, check=True)
    return tools.load_yaml_all(result.stdout)


def apply_crd(plane: ControlPlane) -> None:
    plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    plane.kubectl("wait", "--for=condition=Established", "crd/meetings.audioflow.io", "--timeout=30s")


@dataclass(frozen=True)
class OperatorIdentity:
    service_account: str
    namespace: str
    role: str
    kubeconfig: Path

    @property
    def user(self) -> str:
        """The name RBAC knows it by (for ``kubectl auth can-i --as``)."""
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"


def install_identity(plane: ControlPlane, namespace: str, workdir: Path) -> OperatorIdentity:
    """The chart's operator ServiceAccount, Role, RoleBinding (and its read-only ClusterRole for CRDs),
    rendered by helm for ``namespace`` and applied; a kubeconfig with a token for that account."""
    manifests = render_chart(
        namespace, "templates/operator/serviceaccount.yaml", "templates/operator/rbac.yaml"
    )
    plane.apply(*manifests, namespace=namespace)
    account = next(m for m in manifests if m["kind"] == "ServiceAccount")["metadata"]["name"]
    role = next(m for m in manifests if m["kind"] == "Role")["metadata"]["name"]
    path = workdir / f"operator-{namespace}.kubeconfig"
    plane.kubeconfig_for(account, namespace, path)
    return OperatorIdentity(account, namespace, role, path)


@dataclass
class OperatorProcess:
    """One run of ``audioflow operator``; ``stop()`` is SIGTERM (and must exit 0), ``kill()`` SIGKILL."""

    proc: subprocess.Popen[bytes]
    log: Path
    health_port: int

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_healthy(self, timeout: float = 40) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"the operator exited with {self.proc.returncode}:\n{self.output()[-4000:]}"
                )
            try:
                if httpx.get(f"http://127.0.0.1:{self.health_port}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"the operator was not healthy after {timeout} s:\n{self.output()[-4000:]}")

    def assert_running(self) -> None:
        assert self.proc.poll() is None, (
            f"the operator exited ({self.proc.returncode}):\n{self.output()[-4000:]}"
        )

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


@contextmanager
def running_operator(
    identity: OperatorIdentity, namespace: str, workdir: Path, env: dict[str, str]
) -> Iterator[OperatorProcess]:
    """``audioflow operator`` with the environment the chart gives it (namespace, gateway, Redis,
    token, intervals) plus ``env``; KUBECONFIG is the ServiceAccount's, never the admin's."""
    health = free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AUDIOFLOW_", "KUBERNETES_"))}
    full_env = {
        **base,
        "KUBECONFIG": str(identity.kubeconfig),
        "AUDIOFLOW_NAMESPACE": namespace,
        "AUDIOFLOW_HEALTH_PORT": str(health),
        "AUDIOFLOW_LOG_FORMAT": "json",
        **env,
    }
    index = len(list(workdir.glob("operator-*.log")))
    log = workdir / f"operator-{index}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "audioflow.cli", "operator"],
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    operator = OperatorProcess(proc, log, health)
    try:
        operator.wait_healthy()
        yield operator
    finally:
        operator.stop()
