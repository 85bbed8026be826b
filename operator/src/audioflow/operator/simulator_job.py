"""The simulator Job of a Meeting with ``spec.simulate``: fake-zoom (``audioflow simulate``) sending
the bundled speech, signed with the gateway's webhook secret, to this meeting. A pure builder;
``simulator.py`` adopts the Job (owner reference to the Meeting) and creates it."""

from __future__ import annotations

from typing import Any

from audioflow.operator.model import MeetingSpec, SecretRef, Simulate, job_name

COMPONENT_LABELS = {"app.kubernetes.io/name": "audioflow", "app.kubernetes.io/component": "simulator"}
#: The images run as this (non-root) user; the Job pins it so that ``runAsNonRoot`` can be checked.
RUN_AS = 10001


def simulate_args(gateway_url: str, meeting_id: str, sim: Simulate) -> list[str]:
    args = [
        "simulate",
        "--url",
        gateway_url,
        "--meeting",
        meeting_id,
        "--chunk-seconds",
        f"{sim.chunk_seconds:g}",
    ]
    if sim.chunks is not None:
        args += ["--chunks", str(sim.chunks)]
    if sim.shuffle:
        args.append("--shuffle")
    if sim.duplicates:
        args += ["--duplicates", str(sim.duplicates)]
    if sim.rate:
        args += ["--rate", f"{sim.rate:g}"]
    return args


def build_job(
    *, meeting_name: str, spec: MeetingSpec, secret: SecretRef, gateway_url: str, image: str
) -> dict[str, Any]:
    """The Job manifest (not yet owned: pass it through ``kopf.adopt``)."""
    assert spec.simulate is not None
    labels = {**COMPONENT_LABELS, "audioflow.io/meeting": meeting_name[:63].rstrip("-._")}
    container = {
        "name": "simulate",
        "image": image,
        "command": ["audioflow"],
        "args": simulate_args(gateway_url, spec.meeting_id, spec.simulate),
        "env": [
            {
                "name": "AUDIOFLOW_WEBHOOK_SECRET",
                "valueFrom": {"secretKeyRef": {"name": secret.name, "key": secret.key}},
            },
            {"name": "AUDIOFLOW_LOG_FORMAT", "value": "json"},
        ],
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108 (an emptyDir, for a read-only root)
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job_name(meeting_name), "labels": labels},
        "spec": {
            "backoffLimit": 2,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": RUN_AS,
                        "runAsGroup": RUN_AS,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}}],
                },
            },
        },
    }


def job_state(job: dict[str, Any] | None) -> str:
    """``Missing``, ``Running``, ``Succeeded`` or ``Failed``, from the Job's status."""
    if job is None:
        return "Missing"
    status = job.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("status") == "True" and condition.get("type") in ("Complete", "Failed"):
            return "Succeeded" if condition["type"] == "Complete" else "Failed"
    if status.get("succeeded"):
        return "Succeeded"
    return "Running"
