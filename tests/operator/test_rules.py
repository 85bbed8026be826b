"""Pure rules of the operator, as tables: autoscale annotations, Meeting spec and status, conditions,
the simulator Job; plus the autoscaler's pass and the two HTTP clients against stand-ins."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import redis
from prometheus_client import REGISTRY

from audioflow.core.keys import PROCESSING_GROUP, Keys
from audioflow.core.meeting_model import MeetingPublic
from audioflow.core.scaling import ScalingPolicy
from audioflow.core.streams.queues import enqueue, ensure_group
from audioflow.core.wav import AudioFormat
from audioflow.operator.autoscaler import AnnotationError, Autoscaler, parse_target
from audioflow.operator.gateway import (
    Gateway,
    GatewayRejected,
    GatewayUnavailable,
    MeetingExists,
    MeetingNotFound,
)
from audioflow.operator.model import (
    InvalidSpec,
    MeetingSpec,
    SecretRef,
    Simulate,
    job_name,
    set_condition,
    status_from_meeting,
)
from audioflow.operator.simulator_job import build_job, job_state, simulate_args
from tests.operator.fakes import FakeGatewayServer, FakeKube


def deployment(
    name: str = "processing", replicas: int | None = 2, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    """A labelled Deployment; ``annotations`` keys are short (``max-replicas``); ``<unset>`` drops one."""
    base = {"audioflow.io/stream": "af:transcribe", "audioflow.io/group": "processing"}
    merged = {**base, **{f"audioflow.io/{k}": v for k, v in (annotations or {}).items()}}
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "labels": {"audioflow.io/autoscale": "true"},
            "annotations": {k: v for k, v in merged.items() if v != "<unset>"},
        },
        "spec": {} if replicas is None else {"replicas": replicas},
    }


class TestAnnotations:
    def test_defaults_are_the_policy_defaults(self) -> None:
        target = parse_target(deployment())
        assert (target.name, target.stream, target.group) == ("processing", "af:transcribe", "processing")
        assert target.policy == ScalingPolicy()

    def test_every_annotation_is_read(self) -> None:
        target = parse_target(
            deployment(
                annotations={
                    "min-replicas": "0",
                    "max-replicas": "12",
                    "target-backlog": "25",
                    "scale-down-window-s": "30.5",
                    "cooldown-s": " 0 ",
                }
            )
        )
        assert target.policy == ScalingPolicy(0, 12, 25, 30.5, 0.0)

    @pytest.mark.parametrize(
        ("annotations", "message"),
        [
            ({"stream": "<unset>"}, "audioflow.io/stream is missing"),
            ({"group": "  "}, "audioflow.io/group is missing"),
            ({"max-replicas": "lots"}, "audioflow.io/max-replicas: 'lots' is not a whole number"),
            ({"min-replicas": "1.5"}, "audioflow.io/min-replicas: '1.5' is not a whole number"),
            ({"min-replicas": "-1"}, "audioflow.io/min-replicas: '-1' is negative"),
            ({"min-replicas": "5", "max-replicas": "2"}, "need 0 <= min (5) <= max (2)"),
            ({"target-backlog": "0"}, "target_backlog must be at least 1"),
            ({"cooldown-s": "soon"}, "audioflow.io/cooldown-s: 'soon' is not a number of seconds"),
            ({"scale-down-window-s": "nan"}, "audioflow.io/scale-down-window-s: 'nan' is not a number"),
            ({"scale-down-window-s": "-3"}, "audioflow.io/scale-down-window-s: '-3' is not a number"),
        ],
    )
    def test_bad_annotations_name_the_problem(self, annotations: dict[str, str], message: str) -> None:
        with pytest.raises(AnnotationError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
            parse_target(deployment(annotations=annotations))


@pytest.mark.asyncio
class TestAutoscalerPass:
    """One ``tick`` with a stand-in Kubernetes client and real Redis."""

    async def test_scales_skips_vanished_and_reports_bad_annotations_once(
        self, redis_client: redis.Redis, redis_prefix: str
    ) -> None:
        stream = Keys(redis_prefix).transcribe
        ensure_group(redis_client, stream, PROCESSING_GROUP)
        for seq in range(30):
            enqueue(redis_client, stream, {"seq": seq})
        annotations = {"stream": stream, "max-replicas": "10", "target-backlog": "10"}
        kube = FakeKube(
            deployments=[
                deployment("grows", 1, annotations),
                deployment("vanished", 1, annotations),
                deployment("broken", 1, {**annotations, "min-replicas": "x"}),
                deployment("steady", 3, annotations),
                {**deployment("unlabelled", 1, annotations), "metadata": {"name": "unlabelled"}},
            ],
            vanished={"vanished"},
        )
        clock = iter(float(t) for t in range(100))
        scaler = Autoscaler(kube, redis_client, "ns", clock=lambda: next(clock))  # type: ignore[arg-type]

        decisions = await scaler.tick()
        assert [(d.deployment, d.backlog, d.current, d.desired, d.scaled) for d in decisions] == [
            ("grows", 30, 1, 3, True),
            ("steady", 30, 3, 3, False),
        ]
        assert kube.scaled == [("grows", 3)]
        assert "vanished" not in scaler.memory  # skipped quietly, forgotten, its gauges too
        assert (
            REGISTRY.get_sample_value("audioflow_operator_desired_replicas", {"deployment": "vanished"})
            is None
        )
        assert REGISTRY.get_sample_value("audioflow_operator_desired_replicas", {"deployment": "grows"}) == 3
        assert [(name, reason) for name, _, reason, _ in kube.events] == [
            ("grows", "Scaled"),
            ("broken", "BadAutoscaleAnnotations"),
        ]
        assert scaler.last_tick is not None

        kube.events.clear()
        await scaler.tick()
        assert kube.events == [("grows", "Normal", "Scaled", kube.events[0][3])]  # still 1 in the fake
        kube.deployments[2]["metadata"]["annotations"]["audioflow.io/min-replicas"] = "y"
        kube.events.clear()
        await scaler.tick()
        assert ("broken", "BadAutoscaleAnnotations") in [(n, r) for n, _, r, _ in kube.events]


class TestMeetingSpec:
    def test_defaults(self) -> None:
        spec = MeetingSpec.parse({}, "weekly-sync")
        assert spec == MeetingSpec(meeting_id="weekly-sync", audio=AudioFormat(16000, 1, 16))

    def test_everything(self) -> None:
        spec = MeetingSpec.parse(
            {
                "meetingId": "Weekly.Sync_2",
                "audio": {"sampleRate": 48000, "channels": 2, "bitsPerSample": 24},
                "transcription": {"engine": "whisper", "language": "de"},
                "webhookSecretRef": {"name": "hooks"},
                "simulate": {"chunks": 4, "chunkSeconds": 2.5, "shuffle": True, "duplicates": 1, "rate": 3},
                "retention": {"policy": "Delete", "afterSeconds": 60},
            },
            "name",
        )
        assert spec.meeting_id == "Weekly.Sync_2"
        assert spec.audio == AudioFormat(48000, 2, 24)
        assert (spec.engine, spec.language) == ("whisper", "de")
        assert spec.webhook_secret == SecretRef("hooks", "webhook-secret")
        assert spec.simulate == Simulate(chunks=4, chunk_seconds=2.5, shuffle=True, duplicates=1, rate=3.0)
        assert (spec.retention_policy, spec.retention_after_s) == ("Delete", 60)

    def test_simulate_block_means_enabled_unless_disabled(self) -> None:
        assert MeetingSpec.parse({"simulate": {}}, "m").simulate == Simulate()
        assert MeetingSpec.parse({"simulate": {"enabled": False, "chunks": 3}}, "m").simulate is None

    @pytest.mark.parametrize(
        ("spec", "field"),
        [
            ({"meetingId": ".hidden"}, "spec.meetingId"),
            ({"audio": {"channels": 9}}, "spec.audio"),
            ({"audio": {"sampleRate": "fast"}}, "spec.audio.sampleRate"),
            ({"simulate": {"chunks": 0}}, "spec.simulate.chunks"),
            ({"simulate": {"rate": -1}}, "spec.simulate.rate"),
            ({"retention": {"policy": "Archive"}}, "spec.retention.policy"),
            ({"webhookSecretRef": {"key": "k"}}, "spec.webhookSecretRef.name"),
            ({"audio": "16k"}, "spec.audio"),
        ],
    )
    def test_invalid_specs_name_the_field(self, spec: dict[str, Any], field: str) -> None:
        with pytest.raises(InvalidSpec, match=f"^{field}"):
            MeetingSpec.parse(spec, "name")


class TestStatus:
    def test_conditions_keep_their_transition_time_until_the_status_changes(self) -> None:
        first = set_condition([], "GatewayReachable", False, "GatewayUnreachable", "down", now="T1")
        again = set_condition(
            first, "GatewayReachable", False, "GatewayTimeout", "slow", now="T2", generation=2
        )
        assert again == [
            {
                "type": "GatewayReachable",
                "status": "False",
                "reason": "GatewayTimeout",
                "message": "slow",
                "lastTransitionTime": "T1",
                "observedGeneration": 2,
            }
        ]
        other = {"type": "Other", "status": "True"}
        back = set_condition([*again, other], "GatewayReachable", True, "Connected", now="T3")
        assert [(c["type"], c["status"], c.get("lastTransitionTime")) for c in back] == [
            ("GatewayReachable", "True", "T3"),
            ("Other", "True", None),
        ]
        assert set_condition([], "Simulated", None, "JobNotFound", now="T")[0]["status"] == "Unknown"

    def test_gateway_meeting_to_status(self) -> None:
        server = FakeGatewayServer()
        server.add("m", phase="finalizing", chunks_received=5, chunks_transcribed=5, chunks_concatenated=3,
                   recording_bytes=960044, recording_duration_s=30.0000004)  # fmt: skip
        meeting = MeetingPublic.model_validate(server.meetings["m"])  # as the gateway client reads it
        status = status_from_meeting(meeting, "http://x/v1/meetings/m/recording.wav")
        assert status == {
            "phase": "Finalizing",
            "meetingId": "m",
            "chunksReceived": 5,
            "chunksTranscribed": 5,
            "chunksFailed": 0,
            "chunksConcatenated": 3,
            "concatenatedThrough": -1,
            "gaps": 0,
            "durationSeconds": 30.0,
            "recordingBytes": 960044,
            "backlog": 2,
            "recordingURL": "http://x/v1/meetings/m/recording.wav",
        }

    def test_job_names_fit_a_label(self) -> None:
        assert job_name("standup") == "standup-simulate"
        long = job_name("a" * 60)
        assert len(long) <= 63 and long.endswith("-simulate")
        assert job_name("a" * 60) != job_name("a" * 59 + "b")


class TestSimulatorJob:
    def test_arguments_follow_the_spec(self) -> None:
        assert simulate_args("http://gw:8080", "m", Simulate()) == [
            "simulate", "--url", "http://gw:8080", "--meeting", "m", "--chunk-seconds", "5",
        ]  # fmt: skip
        assert simulate_args("http://gw", "m", Simulate(7, 0.5, True, 2, 1.5))[5:] == [
            "--chunk-seconds", "0.5", "--chunks", "7", "--shuffle", "--duplicates", "2", "--rate", "1.5",
        ]  # fmt: skip

    def test_job_is_locked_down_and_takes_the_secret_by_reference(self) -> None:
        spec = MeetingSpec.parse({"simulate": {}}, "standup")
        job = build_job(
            meeting_name="standup",
            spec=spec,
            secret=SecretRef("hooks", "wh"),
            gateway_url="http://gw",
            image="i:1",
        )
        pod = job["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert container["env"][0]["valueFrom"] == {"secretKeyRef": {"name": "hooks", "key": "wh"}}
        assert "value" not in container["env"][0]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["restartPolicy"] == "Never"
        assert pod["automountServiceAccountToken"] is False

    @pytest.mark.parametrize(
        ("job", "state"),
        [
            (None, "Missing"),
            ({}, "Running"),
            ({"status": {"active": 1}}, "Running"),
            ({"status": {"succeeded": 1}}, "Succeeded"),
            ({"status": {"conditions": [{"type": "Complete", "status": "True"}]}}, "Succeeded"),
            ({"status": {"conditions": [{"type": "Failed", "status": "True"}]}}, "Failed"),
            ({"status": {"conditions": [{"type": "Failed", "status": "False"}]}}, "Running"),
        ],
    )
    def test_job_state(self, job: dict[str, Any] | None, state: str) -> None:
        assert job_state(job) == state


@pytest.mark.asyncio
class TestClients:
    async def test_gateway_errors_are_typed(self) -> None:
        def answer(request: httpx.Request) -> httpx.Response:
            status = int(request.url.path.rsplit("/", 1)[-1])
            if status == 0:
                raise httpx.ReadTimeout("slow", request=request)
            code = "meeting_exists" if status == 409 else "whatever"
            return httpx.Response(status, json={"error": {"code": code, "message": f"said {status}"}})

        gateway = Gateway("http://gw", "token", transport=httpx.MockTransport(answer))
        cases = {
            "0": (GatewayUnavailable, "GatewayTimeout"),
            "503": (GatewayUnavailable, "GatewayServerError"),
            "401": (GatewayRejected, "Unauthorized"),
            "422": (GatewayRejected, "Invalid"),
            "404": (MeetingNotFound, "MeetingNotFound"),
            "409": (MeetingExists, "MeetingExists"),
        }
        for path, (error, reason) in cases.items():
            with pytest.raises(error) as caught:
                await gateway.get_meeting(path)
            assert caught.value.reason == reason
        await gateway.aclose()

        wrong = Gateway(
            "http://gateway.test", "wrong-token", transport=httpx.MockTransport(FakeGatewayServer().handle)
        )
        with pytest.raises(GatewayRejected, match="answered 401"):
            await wrong.get_meeting("m")
        await wrong.aclose()
