"""``NodelessKubelet``: the test's stand-in for the one part of a cluster this control plane lacks.

There are no nodes here (no kubelet can run on these machines), so a Pod stays Pending for ever. Where a
test needs a Pod to finish (a Job's Pod, a ``helm test`` hook), this stand-in does what a kubelet would
do for it and nothing more: it runs the Pod's container command as a local process (the image's
entrypoint replaced by the matching local command, the container's environment and the ``$(NAME)``
references in its args resolved as a kubelet resolves them, ``pod_env``), then reports the exit code
to the Pod's status through the ``pods/status`` subresource.
Service addresses in the container's arguments and environment can be routed to local processes
(``routes``), standing in for cluster DNS and kube-proxy. Everything after that (the Job controller
counting a success, helm reading the phase) is the real control plane's. What only real nodes show
(image pulls, the security context enforced by a container runtime, DNS and Service routing) is not
proven by it.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.kube.controlplane import ControlPlane
from tests.kube.pod_env import Lookups, container_args, container_env


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class NodelessKubelet:
    def __init__(self, plane: ControlPlane, namespace: str) -> None:
        self.plane = plane
        self.namespace = namespace
        self.last_output = ""

    def pending_pod(self, selector: str) -> dict[str, Any] | None:
        """The first Pending Pod matching the label ``selector``, or None."""
        for pod in self.plane.items("pods", self.namespace, selector):
            if (pod.get("status") or {}).get("phase", "Pending") == "Pending":
                return pod
        return None

    def wait_for_pending_pod(self, selector: str, timeout: float = 60) -> dict[str, Any]:
        """The first Pending Pod matching ``selector``, once one exists (a controller or helm makes it)."""
        deadline = time.monotonic() + timeout
        while (pod := self.pending_pod(selector)) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no Pending Pod matching {selector} within {timeout} s")
            time.sleep(0.2)
        return pod

    def environment(self, pod: dict[str, Any], container: dict[str, Any]) -> dict[str, str]:
        """The container's environment as a kubelet builds it (``pod_env``), its Secrets and ConfigMaps
        read from the API server as the admin, as a kubelet reads them for its Pods."""
        return container_env(container, pod, Lookups(secret=self._secret, config_map=self._config_map))

    def _secret(self, name: str) -> dict[str, str] | None:
        found = self.plane.get("secret", name, self.namespace)
        if found is None:
            return None
        return {key: base64.b64decode(value).decode() for key, value in (found.get("data") or {}).items()}

    def _config_map(self, name: str) -> dict[str, str] | None:
        found = self.plane.get("configmap", name, self.namespace)
        return None if found is None else dict(found.get("data") or {})

    def run_locally(
        self,
        pod: dict[str, Any],
        *,
        image_command: Sequence[str],
        cwd: Path,
        timeout: float = 300,
        routes: Mapping[str, str] | None = None,
    ) -> int:
        """Run the Pod's (single) container as a local process, ``image_command`` standing for its
        ``command``, then report the outcome; the exit code is returned.

        ``routes`` maps in-cluster addresses to local ones (``{"http://svc:8080": "http://127.0.0.1:5123"}``):
        each is replaced in the container's args and environment values, as the cluster's DNS and
        Service routing would have taken the request there."""
        (container,) = pod["spec"]["containers"]

        def routed(value: str) -> str:
            for cluster, local in (routes or {}).items():
                value = value.replace(cluster, local)
            return value

        own = self.environment(pod, container)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIOFLOW_")}
        env.update({k: routed(v) for k, v in own.items()})
        result = subprocess.run(
            [*image_command, *(routed(arg) for arg in container_args(container, own))],
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        self.last_output = result.stdout + result.stderr
        self.report(pod, result.returncode)
        return result.returncode

    def report(self, pod: dict[str, Any], exit_code: int) -> None:
        """Write the terminated container and the Pod's phase to its status, as a kubelet does."""
        (container,) = pod["spec"]["containers"]
        now = _now()
        status = {
            "phase": "Succeeded" if exit_code == 0 else "Failed",
            "startTime": now,
            "conditions": [{"type": "Ready", "status": "False", "reason": "PodCompleted"}],
            "containerStatuses": [
                {
                    "name": container["name"],
                    "image": container["image"],
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "state": {
                        "terminated": {
                            "exitCode": exit_code,
                            "reason": "Completed" if exit_code == 0 else "Error",
                            "startedAt": now,
                            "finishedAt": now,
                        }
                    },
                }
            ],
        }
        self.plane.kubectl(
            "patch", "pod", pod["metadata"]["name"], "--namespace", self.namespace,
            "--subresource=status", "--type=merge", "-p", json.dumps({"status": status}),
        )  # fmt: skip
