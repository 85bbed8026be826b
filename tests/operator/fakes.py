"""Stand-ins for the unit tests: a gateway served by ``httpx.MockTransport`` (the real client code
runs against it) and a Kubernetes client that keeps what it is asked to do."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx

from audioflow.operator.gateway import Gateway
from audioflow.operator.kube import KubeNotFound, ObjectRef


@dataclass
class FakeGatewayServer:
    """The reader API's meeting endpoints, in memory. ``down`` refuses connections."""

    meetings: dict[str, dict[str, Any]] = field(default_factory=dict)
    down: bool = False
    calls: list[str] = field(default_factory=list)

    def add(self, meeting_id: str, *, phase: str = "pending", rate: int = 16000, **counts: Any) -> None:
        self.meetings[meeting_id] = {
            "id": meeting_id,
            "phase": phase,
            "format": {"sample_rate": rate, "channels": 1, "bits": 16},
            "chunks_received": 0,
            "chunks_transcribed": 0,
            "chunks_failed": 0,
            "chunks_concatenated": 0,
            "concatenated_through": -1,
            "highest_seq": -1,
            "gaps": [],
            "recording_duration_s": 0.0,
            "recording_bytes": 0,
            "failed_reason": None,
            "created_at": "2026-01-01T00:00:00Z",
            "ended_at": None,
            "updated_at": None,
            **counts,
        }

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(f"{request.method} {request.url.path}")
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        if request.headers.get("authorization") != "Bearer unit-test-token-000":
            return _error(401, "invalid_token")
        parts = request.url.path.strip("/").split("/")  # v1 meetings [id] [end]
        if request.method == "POST" and parts == ["v1", "meetings"]:
            body = json.loads(request.content)
            if body["id"] in self.meetings:
                return _error(409, "meeting_exists")
            self.add(body["id"], rate=body["format"]["sample_rate"])
            return httpx.Response(201, json=self.meetings[body["id"]])
        meeting = self.meetings.get(parts[2]) if len(parts) > 2 else None
        if meeting is None:
            return _error(404, "meeting_not_found")
        if request.method == "GET":
            return httpx.Response(200, json=meeting)
        if request.method == "POST" and parts[3:] == ["end"]:
            meeting["ended_at"] = "2026-01-01T00:00:00Z"
            meeting["phase"] = "finalizing" if meeting["chunks_received"] else "completed"
            return httpx.Response(200, json=meeting)
        if request.method == "DELETE":
            del self.meetings[parts[2]]
            return httpx.Response(204)
        return _error(405, "method_not_allowed")

    def client(self) -> Gateway:
        return Gateway(
            "http://gateway.test", "unit-test-token-000", transport=httpx.MockTransport(self.handle)
        )


def _error(status: int, code: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": code.replace("_", " ")}})


@dataclass
class FakeKube:
    """Records what the operator asks of Kubernetes."""

    events: list[tuple[str, str, str, str]] = field(default_factory=list)  # (object, type, reason, message)
    secrets: dict[str, set[str]] = field(default_factory=dict)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    deleted_jobs: list[str] = field(default_factory=list)
    deleted_meetings: list[str] = field(default_factory=list)
    deployments: list[dict[str, Any]] = field(default_factory=list)
    scaled: list[tuple[str, int]] = field(default_factory=list)
    vanished: set[str] = field(default_factory=set)  # deployments deleted between list and patch
    applies_scale: bool = False  # a scale also changes the listed Deployment's spec.replicas

    async def record_event(self, ref: ObjectRef, *, type: str, reason: str, message: str) -> None:
        self.events.append((ref.name, type, reason, message))

    def reasons(self) -> list[str]:
        return [reason for _, _, reason, _ in self.events]

    async def secret_keys(self, namespace: str, name: str) -> set[str]:
        if name not in self.secrets:
            raise KubeNotFound(404, "NotFound", f"secrets {name!r} not found")
        return self.secrets[name]

    async def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.jobs.get(name)

    async def create_job(self, namespace: str, job: dict[str, Any]) -> bool:
        name = job["metadata"]["name"]
        if name in self.jobs:
            return False
        self.jobs[name] = job
        return True

    async def delete_job(self, namespace: str, name: str) -> None:
        self.deleted_jobs.append(name)
        self.jobs.pop(name, None)

    async def delete_meeting(self, namespace: str, name: str) -> None:
        self.deleted_meetings.append(name)

    async def list_deployments(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        return self.deployments

    async def scale_deployment(self, namespace: str, name: str, replicas: int) -> None:
        if name in self.vanished:
            raise KubeNotFound(404, "NotFound", f"deployments.apps {name!r} not found")
        self.scaled.append((name, replicas))
        if self.applies_scale:
            for deployment in self.deployments:
                if deployment["metadata"]["name"] == name:
                    deployment["spec"]["replicas"] = replicas
