"""The Meeting handlers as plain functions: no kopf, no cluster; a fake gateway behind the real client."""

from __future__ import annotations

import datetime
import logging
import uuid
from typing import Any

import pytest

from audioflow.core.settings import Settings
from audioflow.operator.gateway import GatewayUnavailable
from audioflow.operator.meeting import finalize_meeting, mirror_status, reconcile_meeting
from audioflow.operator.model import FormatConflict, InvalidSpec
from audioflow.operator.simulator import SimulatorSecretMissing
from tests.operator.fakes import FakeGatewayServer, FakeKube

pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("no_env")]

log = logging.getLogger("test")


def settings() -> Settings:
    """Built inside each test, after ``no_env`` cleared the environment."""
    return Settings(gateway_url="http://gateway.test", simulator_image="sim:1", finalizer_timeout_s=60)


def body(name: str = "standup", spec: dict[str, Any] | None = None, generation: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "audioflow.io/v1alpha1",
        "kind": "Meeting",
        "metadata": {"name": name, "namespace": "ns", "uid": str(uuid.uuid4()), "generation": generation},
        "spec": spec or {},
    }


def conditions(patch: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in patch.get("status", {}).get("conditions", [])}


async def reconcile(
    obj: dict[str, Any],
    server: FakeGatewayServer,
    kube: FakeKube,
    status: dict[str, Any] | None = None,
    raises: type[Exception] | None = None,
) -> dict[str, Any]:
    """Run the handler; return the status patch it wrote (also when it raised ``raises``)."""
    patch: dict[str, Any] = {}
    gateway = server.client()
    try:
        call = reconcile_meeting(
            body=obj, spec=obj["spec"], status=status or {}, gateway=gateway, kube=kube,  # type: ignore[arg-type]
            settings=settings(), patch=patch, logger=log,
        )  # fmt: skip
        if raises is None:
            await call
        else:
            with pytest.raises(raises):
                await call
    finally:
        await gateway.aclose()
    return patch


async def mirror(
    obj: dict[str, Any],
    server: FakeGatewayServer,
    kube: FakeKube,
    status: dict[str, Any],
    now: datetime.datetime | None = None,
) -> dict[str, Any]:
    patch: dict[str, Any] = {}
    gateway = server.client()
    try:
        await mirror_status(
            body=obj, spec=obj["spec"], status=status, gateway=gateway, kube=kube,  # type: ignore[arg-type]
            settings=settings(), patch=patch, logger=log, now=now,
        )  # fmt: skip
    finally:
        await gateway.aclose()
    return patch


class TestReconcile:
    async def test_registers_the_meeting_and_reports_it(self) -> None:
        server, kube = FakeGatewayServer(), FakeKube()
        patch = await reconcile(body("standup", {"audio": {"sampleRate": 48000}}, generation=3), server, kube)
        assert server.meetings["standup"]["format"]["sample_rate"] == 48000
        status = patch["status"]
        assert (status["phase"], status["meetingId"], status["observedGeneration"]) == (
            "Pending",
            "standup",
            3,
        )
        assert status["recordingURL"] == "http://gateway.test/v1/meetings/standup/recording.wav"
        found = conditions(patch)
        assert found["GatewayReachable"]["status"] == found["Registered"]["status"] == "True"
        assert found["Registered"]["observedGeneration"] == 3
        assert kube.reasons() == ["Registered"]

    async def test_is_idempotent(self) -> None:
        server, kube = FakeGatewayServer(), FakeKube()
        obj = body("standup", {"meetingId": "m-1"})
        first = await reconcile(obj, server, kube)
        second = await reconcile(obj, server, kube, status=first["status"])
        assert list(server.meetings) == ["m-1"]
        assert kube.reasons() == ["Registered"]  # announced once
        assert "conditions" not in second["status"]  # nothing changed

    async def test_gateway_down_becomes_a_condition_and_a_temporary_error(self) -> None:
        server, kube = FakeGatewayServer(down=True), FakeKube()
        obj = body()
        patch = await reconcile(obj, server, kube, raises=GatewayUnavailable)
        down = conditions(patch)["GatewayReachable"]
        assert (down["status"], down["reason"]) == ("False", "GatewayUnreachable")
        assert "cannot reach the gateway at http://gateway.test" in down["message"]
        assert kube.reasons() == ["GatewayUnreachable"]

        # A retry that sees the stored condition does not announce it again.
        await reconcile(obj, server, kube, status=patch["status"], raises=GatewayUnavailable)
        assert kube.reasons() == ["GatewayUnreachable"]

    async def test_existing_meeting_with_another_format_is_a_conflict(self) -> None:
        server, kube = FakeGatewayServer(), FakeKube()
        server.add("standup", rate=8000)
        patch = await reconcile(body(), server, kube, raises=FormatConflict)
        registered = conditions(patch)["Registered"]
        assert (registered["status"], registered["reason"]) == ("False", "FormatConflict")
        assert "8000 Hz" in registered["message"]
        assert conditions(patch)["GatewayReachable"]["status"] == "True"

    async def test_existing_meeting_with_the_same_format_is_adopted(self) -> None:
        server, kube = FakeGatewayServer(), FakeKube()
        server.add("standup", phase="live", chunks_received=4)  # chunks arrived before the resource
        patch = await reconcile(body(), server, kube)
        assert (patch["status"]["phase"], patch["status"]["chunksReceived"]) == ("Live", 4)
        assert kube.reasons() == []  # nothing was registered now

    async def test_invalid_default_id_is_permanent(self) -> None:
        server, kube = FakeGatewayServer(), FakeKube()
        patch = await reconcile(body("x" * 129), server, kube, raises=InvalidSpec)
        registered = conditions(patch)["Registered"]
        assert registered["reason"] == "InvalidSpec"
        assert "metadata.name" in registered["message"]
        assert server.calls == []

    async def test_simulator_waits_for_its_secret_then_starts_an_owned_job(self) -> None:
        server, kube = FakeGatewayServer(), FakeKube()
        obj = body("demo", {"simulate": {"chunks": 4}, "webhookSecretRef": {"name": "hooks", "key": "wh"}})
        patch = await reconcile(obj, server, kube, raises=SimulatorSecretMissing)
        assert conditions(patch)["Simulated"]["reason"] == "SecretNotFound"
        assert kube.jobs == {}

        kube.secrets["hooks"] = {"other"}
        patch = await reconcile(obj, server, kube, status=patch["status"], raises=SimulatorSecretMissing)
        assert conditions(patch)["Simulated"]["reason"] == "SecretKeyNotFound"

        kube.secrets["hooks"] = {"wh"}
        patch = await reconcile(obj, server, kube, status=patch["status"])
        job = kube.jobs["demo-simulate"]
        owner = job["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["uid"], owner["controller"]) == ("Meeting", obj["metadata"]["uid"], True)
        assert job["metadata"]["namespace"] == "ns"
        container = job["spec"]["template"]["spec"]["containers"][0]
        assert container["args"] == [
            *("simulate", "--url", "http://gateway.test", "--meeting", "demo"),
            *("--chunk-seconds", "5", "--chunks", "4"),
        ]
        assert container["image"] == "sim:1"
        assert patch["status"]["simulatorJob"] == "demo-simulate"
        assert conditions(patch)["Simulated"]["reason"] == "JobRunning"
        assert "SimulatorStarted" in kube.reasons()

        await reconcile(obj, server, kube, status=patch["status"])  # again: the Job exists, nothing new
        assert kube.reasons().count("SimulatorStarted") == 1

    async def test_simulator_without_any_secret_is_invalid(self) -> None:
        with pytest.raises(InvalidSpec, match="webhookSecretRef"):
            await reconcile(body("demo", {"simulate": {}}), FakeGatewayServer(), FakeKube())


class TestMirror:
    async def test_copies_progress_and_computes_the_backlog(self) -> None:
        server, kube = FakeGatewayServer(), FakeKube()
        server.add(
            "standup",
            phase="live",
            chunks_received=10,
            chunks_transcribed=6,
            chunks_failed=1,
            chunks_concatenated=5,
            concatenated_through=4,
            gaps=[2],
            recording_duration_s=25.04,
        )
        patch = await mirror(body(), server, kube, status={})
        status = patch["status"]
        assert status["phase"] == "Live"
        assert (status["chunksReceived"], status["chunksTranscribed"], status["chunksConcatenated"]) == (
            10,
            6,
            5,
        )
        assert (status["concatenatedThrough"], status["gaps"], status["durationSeconds"]) == (4, 1, 25.04)
        assert status["backlog"] == 5  # 10 received, 5 not yet in the recording
        assert conditions(patch)["Completed"]["status"] == "False"

    async def test_ends_the_meeting_when_the_simulator_succeeded(self) -> None:
        server, kube = FakeGatewayServer(), FakeKube()
        server.add("demo", phase="live", chunks_received=3)
        kube.jobs["demo-simulate"] = {"status": {"succeeded": 1}}
        obj = body("demo", {"simulate": {}, "webhookSecretRef": {"name": "hooks"}})
        patch = await mirror(obj, server, kube, status={})
        assert server.meetings["demo"]["ended_at"] is not None
        assert patch["status"]["phase"] == "Finalizing"
        assert conditions(patch)["Simulated"]["status"] == "True"
        assert {"SimulatorSucceeded", "Ended"} <= set(kube.reasons())

    async def test_failed_simulator_is_reported_and_the_meeting_stays_open(self) -> None:
        server, kube = FakeGatewayServer(), FakeKube()
        server.add("demo", phase="live", chunks_received=1)
        kube.jobs["demo-simulate"] = {"status": {"conditions": [{"type": "Failed", "status": "True"}]}}
        obj = body("demo", {"simulate": {}, "webhookSecretRef": {"name": "hooks"}})
        patch = await mirror(obj, server, kube, status={})
        assert conditions(patch)["Simulated"]["reason"] == "JobFailed"
        assert server.meetings["demo"]["ended_at"] is None
        assert "SimulatorFailed" in kube.reasons()

    async def test_gateway_down_is_a_condition_not_an_error(self) -> None:
        server, kube = FakeGatewayServer(down=True), FakeKube()
        patch = await mirror(body(), server, kube, status={"phase": "Live"})
        assert conditions(patch)["GatewayReachable"]["status"] == "False"
        assert "phase" not in patch["status"]  # the last known progress stays

    async def test_registers_again_only_what_was_registered(self) -> None:
        server, kube = FakeGatewayServer(), FakeKube()
        patch = await mirror(body(), server, kube, status={})  # not registered yet: reconcile's job
        assert patch == {} and server.meetings == {}

        registered = {"conditions": [{"type": "Registered", "status": "True", "reason": "Registered"}]}
        patch = await mirror(body(), server, kube, status=registered)
        assert "standup" in server.meetings
        assert kube.reasons() == ["Reregistered"]

    async def test_retention_after_seconds_deletes_the_finished_resource(self) -> None:
        server, kube = FakeGatewayServer(), FakeKube()
        server.add("standup", phase="completed")
        obj = body("standup", {"retention": {"policy": "Delete", "afterSeconds": 60}})
        now = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.UTC)
        patch = await mirror(obj, server, kube, status={}, now=now)
        assert patch["status"]["completedAt"] == "2026-01-01T12:00:00Z"
        assert conditions(patch)["Completed"]["status"] == "True"
        assert kube.deleted_meetings == []

        later = now + datetime.timedelta(seconds=61)
        await mirror(obj, server, kube, status=patch["status"], now=later)
        assert kube.deleted_meetings == ["standup"]
        assert "Expired" in kube.reasons()


class TestFinalize:
    async def finalize(
        self, obj: dict[str, Any], server: FakeGatewayServer, kube: FakeKube, elapsed_s: float = 0.0
    ) -> None:
        gateway = server.client()
        try:
            await finalize_meeting(
                body=obj, spec=obj["spec"], gateway=gateway, kube=kube,  # type: ignore[arg-type]
                settings=settings(), logger=log, elapsed_s=elapsed_s,
            )  # fmt: skip
        finally:
            await gateway.aclose()

    async def test_keep_leaves_the_gateway_alone(self) -> None:
        server, kube = FakeGatewayServer(), FakeKube()
        server.add("standup")
        await self.finalize(body(), server, kube)
        assert "standup" in server.meetings and server.calls == []

    async def test_delete_removes_the_meeting_and_stops_the_simulator_first(self) -> None:
        server, kube = FakeGatewayServer(), FakeKube()
        server.add("demo")
        obj = body("demo", {"retention": {"policy": "Delete"}, "simulate": {}})
        await self.finalize(obj, server, kube)
        assert server.meetings == {}
        assert kube.deleted_jobs == ["demo-simulate"]
        await self.finalize(obj, server, kube)  # again (a retried finalizer): already gone, fine

    async def test_gateway_down_retries_then_gives_up_after_the_timeout(self) -> None:
        server, kube = FakeGatewayServer(down=True), FakeKube()
        obj = body("demo", {"retention": {"policy": "Delete"}})
        with pytest.raises(GatewayUnavailable):
            await self.finalize(obj, server, kube, elapsed_s=10)
        await self.finalize(obj, server, kube, elapsed_s=61)
        assert kube.reasons() == ["RetentionAbandoned"]
