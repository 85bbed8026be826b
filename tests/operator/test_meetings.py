"""Meeting lifecycle: real kopf against kmock's emulator, a real gateway on real Redis and SQLite."""

from __future__ import annotations

import asyncio
import base64
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from audioflow.core.wav import AudioFormat, canonical_header
from tests.integration.stack import Stack, make_stack
from tests.operator.harness import (
    JOBS,
    MEETINGS,
    NAMESPACE,
    SECRETS,
    create,
    delete,
    events_for,
    eventually,
    meeting_body,
    operator_settings,
    running_operator,
    stored,
)

pytestmark = pytest.mark.asyncio

FORMAT = AudioFormat(16000, 1, 16)


def chunk(seconds: float = 0.5) -> bytes:
    pcm = bytes(int(FORMAT.sample_rate * seconds) * FORMAT.block_align)
    return canonical_header(FORMAT, len(pcm)) + pcm


def condition(obj: dict[str, Any] | None, type: str) -> dict[str, Any] | None:
    for found in ((obj or {}).get("status") or {}).get("conditions") or []:
        if found["type"] == type:
            return dict(found)
    return None


def status_of(kmock: Any, name: str) -> dict[str, Any]:
    return dict((stored(kmock, MEETINGS, name) or {}).get("status") or {})


def settings_for(gateway: Stack, redis_url: str, prefix: str) -> Any:
    return operator_settings(redis_url, prefix, gateway_url=gateway.base_url, admin_token=gateway.admin_token)


async def test_created_meeting_is_registered_and_mirrors_the_gateway(
    emulator: Any, gateway: Stack, redis_server_url: str, redis_prefix: str
) -> None:
    async with running_operator(settings_for(gateway, redis_server_url, redis_prefix)):
        await create(emulator, MEETINGS, meeting_body("standup", {"meetingId": "op-standup"}))

        registered = await eventually(
            "the meeting registered and mirrored",
            lambda: (s := status_of(emulator, "standup")).get("phase") == "Pending" and s,
        )
        assert gateway.meeting("op-standup")["format"] == {"sample_rate": 16000, "channels": 1, "bits": 16}
        assert registered["meetingId"] == "op-standup"
        assert registered["chunksReceived"] == 0
        assert registered["recordingURL"] == f"{gateway.base_url}/v1/meetings/op-standup/recording.wav"
        assert registered["observedGeneration"] == 1
        obj = stored(emulator, MEETINGS, "standup")
        assert (condition(obj, "GatewayReachable") or {}).get("status") == "True"
        assert (condition(obj, "Registered") or {}).get("status") == "True"
        assert "Registered" in {e["reason"] for e in events_for(emulator, "standup")}
        assert "audioflow.io/finalizer" in (obj or {})["metadata"]["finalizers"]

        # Progress on the gateway reaches status through the timer.
        for seq in range(3):
            assert gateway.send("op-standup", seq, chunk()) == 201
        live = await eventually(
            "three chunks in status",
            lambda: (s := status_of(emulator, "standup")).get("chunksReceived") == 3 and s,
        )
        assert live["phase"] == "Live"
        assert live["backlog"] == 3  # no workers run here: nothing is transcribed or recorded yet


async def test_simulator_job_runs_against_the_meeting_and_ends_it(
    emulator: Any, gateway: Stack, redis_server_url: str, redis_prefix: str
) -> None:
    """The Job the operator creates is run here as a kubelet would (its command and Secret env,
    for real, against the real gateway); when it succeeds, the operator ends the meeting."""
    secret: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "hooks", "namespace": NAMESPACE},
        "data": {"signing": base64.b64encode(gateway.secret.encode()).decode()},
    }
    await create(emulator, SECRETS, secret)
    spec = {
        "webhookSecretRef": {"name": "hooks", "key": "signing"},
        "simulate": {"enabled": True, "chunks": 3, "chunkSeconds": 1, "shuffle": True, "duplicates": 1},
        "retention": {"policy": "Delete"},
    }
    body = meeting_body("sim-demo", spec)
    async with running_operator(settings_for(gateway, redis_server_url, redis_prefix)):
        await create(emulator, MEETINGS, body)
        job = await eventually("the simulator Job", lambda: stored(emulator, JOBS, "sim-demo-simulate"))
        owner = job["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
            "Meeting",
            "sim-demo",
            body["metadata"]["uid"],
            True,
        )
        pod = job["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert container["image"] == "audioflow-workers:test"
        assert container["env"][0] == {
            "name": "AUDIOFLOW_WEBHOOK_SECRET",
            "valueFrom": {"secretKeyRef": {"name": "hooks", "key": "signing"}},
        }
        assert pod["securityContext"]["runAsNonRoot"] is True
        # The operator creates the Job, then writes the condition: wait for the second write too.
        simulated = await eventually(
            "the Simulated condition",
            lambda: condition(stored(emulator, MEETINGS, "sim-demo"), "Simulated"),
        )
        assert simulated.get("reason") == "JobRunning"

        # Be the kubelet: run the container's command with its Secret, then report the Job done.
        env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIOFLOW_")}
        env["AUDIOFLOW_WEBHOOK_SECRET"] = base64.b64decode(secret["data"]["signing"]).decode()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "audioflow.cli", *container["args"], env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        output, _ = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, output.decode()
        done = {"status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}}
        response = await emulator.patch(
            f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs/sim-demo-simulate/status", json=done
        )
        assert response.status == 200

        ended = await eventually(
            "the meeting ended after the simulation",
            lambda: (s := status_of(emulator, "sim-demo")).get("phase") == "Finalizing" and s,
        )
        assert ended["chunksReceived"] == 3  # all three, the duplicate changed nothing
        assert gateway.meeting("sim-demo")["ended_at"] is not None
        assert (condition(stored(emulator, MEETINGS, "sim-demo"), "Simulated") or {}).get("status") == "True"
        reasons = {e["reason"] for e in events_for(emulator, "sim-demo")}
        assert {"Registered", "SimulatorStarted", "SimulatorSucceeded", "Ended"} <= reasons

        # Deleting the Meeting (retention Delete) removes the Job and the gateway's meeting.
        await delete(emulator, MEETINGS, "sim-demo")
        await eventually("the Meeting gone", lambda: stored(emulator, MEETINGS, "sim-demo") is None)
        assert stored(emulator, JOBS, "sim-demo-simulate") is None
        assert gateway.get("/v1/meetings/sim-demo").status_code == 404


async def test_deletion_applies_the_retention_policy(
    emulator: Any, gateway: Stack, redis_server_url: str, redis_prefix: str
) -> None:
    async with running_operator(settings_for(gateway, redis_server_url, redis_prefix)):
        await create(emulator, MEETINGS, meeting_body("keep-me", {"retention": {"policy": "Keep"}}))
        await create(emulator, MEETINGS, meeting_body("drop-me", {"retention": {"policy": "Delete"}}))
        for name in ("keep-me", "drop-me"):
            await eventually(f"{name} registered", lambda n=name: status_of(emulator, n).get("phase"))  # type: ignore[misc]
        assert gateway.get("/v1/meetings/drop-me").status_code == 200

        await delete(emulator, MEETINGS, "keep-me")
        await delete(emulator, MEETINGS, "drop-me")
        for name in ("keep-me", "drop-me"):
            # The finalizer ran (and was removed): the emulator lets the object go.
            await eventually(f"{name} deleted", lambda n=name: stored(emulator, MEETINGS, n) is None)  # type: ignore[misc]
        assert gateway.get("/v1/meetings/drop-me").status_code == 404
        assert gateway.get("/v1/meetings/keep-me").status_code == 200


async def test_gateway_down_is_a_condition_not_a_crash(
    emulator: Any, redis_server_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    offline = make_stack(tmp_path, redis_server_url, f"sqlite:///{tmp_path}/db.sqlite", redis_prefix)
    try:
        async with running_operator(settings_for(offline, redis_server_url, redis_prefix)) as operator:
            await create(emulator, MEETINGS, meeting_body("offline", {"meetingId": "op-offline"}))
            down = await eventually(
                "GatewayReachable=False",
                lambda: (
                    (c := condition(stored(emulator, MEETINGS, "offline"), "GatewayReachable"))
                    and c["status"] == "False"
                    and c
                ),
            )
            assert down["reason"] == "GatewayUnreachable"
            assert "cannot reach the gateway" in down["message"]
            warnings = [e for e in events_for(emulator, "offline") if e["type"] == "Warning"]
            assert [e["reason"] for e in warnings] == ["GatewayUnreachable"]  # once, not per retry

            await asyncio.sleep(1.5)  # retries (every 0.5 s here) and timer ticks go by
            assert operator.is_alive()
            assert (condition(stored(emulator, MEETINGS, "offline"), "GatewayReachable") or {})[
                "status"
            ] == "False"

            # The gateway comes up: a retry registers the meeting and the condition clears.
            await asyncio.to_thread(offline.start_api)
            await eventually(
                "the meeting registered once the gateway is up",
                lambda: (
                    (condition(stored(emulator, MEETINGS, "offline"), "Registered") or {}).get("status")
                    == "True"
                ),
                within=15,
            )
            assert (condition(stored(emulator, MEETINGS, "offline"), "GatewayReachable") or {})[
                "status"
            ] == "True"
            assert offline.meeting("op-offline")["phase"] == "pending"
    finally:
        offline.stop()
