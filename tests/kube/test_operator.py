"""The operator as a real process (``audioflow operator``) on the real API server, logged in as the
chart's own operator ServiceAccount, with a real gateway, processing and concat workers, Redis and
PostgreSQL as local processes.

What the API server decides is judged here: watch parameters (``timeoutSeconds`` must be an integer;
the watch is renewed every few seconds in these tests), RBAC for every call the operator makes,
owner references on the simulator Job, the status subresource, Events. Pods have no node to run on,
so the simulator Job's one Pod is run by :class:`tests.kube.kubelet.NodelessKubelet`: its container
command as a local process, its exit code reported to the Pod's status; the Job controller of the
real kube-controller-manager takes it from there.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from audioflow.operator.model import job_name
from tests import services
from tests.integration.stack import Stack, make_stack
from tests.kube.controlplane import ControlPlane
from tests.kube.kubelet import NodelessKubelet
from tests.kube.operator_process import (
    OperatorIdentity,
    apply_crd,
    install_identity,
    render_chart,
    running_operator,
)
from tests.services import eventually

AUDIO = {"sampleRate": 16000, "channels": 1, "bitsPerSample": 16}


@pytest.fixture(scope="module")
def stack(
    redis_server_url: str, postgres_server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """The gateway and both workers on PostgreSQL and Redis, shared by the module's tests."""
    workdir = tmp_path_factory.mktemp("stack")
    prefix = services.redis_prefix()
    with services.fresh_postgres_database(postgres_server_url) as database_url:
        running = make_stack(workdir, redis_server_url, database_url, prefix)
        running.start_api()
        running.start_worker("processing")
        running.start_worker("concat")
        try:
            yield running
        finally:
            running.stop()
            services.delete_prefix(redis_server_url, prefix)


@pytest.fixture
def identity(control_plane: ControlPlane, namespace: str, tmp_path: Path, stack: Stack) -> OperatorIdentity:
    """The CRD, the chart's operator RBAC in ``namespace``, and the chart's Secret name holding the
    gateway's webhook secret (the one Secret the Role lets the operator read)."""
    apply_crd(control_plane)
    found = install_identity(control_plane, namespace, tmp_path)
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "af-audioflow", "namespace": namespace},
        "stringData": {"webhook-secret": stack.secret},
    }
    control_plane.apply(secret, namespace=namespace)
    return found


def operator_env(stack: Stack, **extra: str) -> dict[str, str]:
    return {
        "AUDIOFLOW_GATEWAY_URL": stack.base_url,
        "AUDIOFLOW_ADMIN_TOKEN": stack.admin_token,
        "REDIS_URL": stack.env["REDIS_URL"],
        "AUDIOFLOW_REDIS_PREFIX": stack.env["AUDIOFLOW_REDIS_PREFIX"],
        "AUDIOFLOW_WEBHOOK_SECRET_NAME": "af-audioflow",
        "AUDIOFLOW_SIMULATOR_IMAGE": "audioflow-workers:test",
        "AUDIOFLOW_STATUS_INTERVAL_S": "0.5",
        "AUDIOFLOW_AUTOSCALE_INTERVAL_S": "0.5",
        "AUDIOFLOW_RETRY_DELAY_S": "1",
        # The server ends each watch after 5 s and kopf opens the next one: a test run renews it
        # many times, each with an integer timeoutSeconds the real API server accepts.
        "AUDIOFLOW_WATCH_TIMEOUT_S": "5",
        **extra,
    }


def meeting(
    name: str, meeting_id: str, *, simulate: dict[str, Any] | None = None, policy: str = "Delete"
) -> dict[str, Any]:
    spec: dict[str, Any] = {"meetingId": meeting_id, "audio": AUDIO, "retention": {"policy": policy}}
    if simulate is not None:
        spec["simulate"] = {"enabled": True, **simulate}
    return {
        "apiVersion": "audioflow.io/v1alpha1",
        "kind": "Meeting",
        "metadata": {"name": name},
        "spec": spec,
    }


def conditions(obj: dict[str, Any] | None) -> dict[str, str]:
    found = ((obj or {}).get("status") or {}).get("conditions") or []
    return {c["type"]: c["status"] for c in found}


def event_reasons(plane: ControlPlane, namespace: str, name: str) -> set[str]:
    return {
        e["reason"]
        for e in plane.items("events", namespace)
        if e["involvedObject"].get("name") == name and e["involvedObject"].get("kind") == "Meeting"
    }


def registered(plane: ControlPlane, namespace: str, name: str) -> dict[str, Any] | None:
    found = plane.get("meeting", name, namespace)
    return found if conditions(found).get("Registered") == "True" else None


def test_operator_starts_on_its_service_account_and_registers_a_meeting(
    control_plane: ControlPlane, namespace: str, identity: OperatorIdentity, stack: Stack, tmp_path: Path
) -> None:
    meeting_id = f"k8s-{uuid.uuid4().hex[:8]}"
    with running_operator(identity, namespace, tmp_path, operator_env(stack)) as operator:
        control_plane.apply(meeting("standup", meeting_id), namespace=namespace)
        found = eventually(
            "the Meeting to be registered", lambda: registered(control_plane, namespace, "standup"), 60,
            operator.output,
        )  # fmt: skip
        assert found["status"]["phase"] == "Pending"
        assert found["metadata"]["finalizers"] == ["audioflow.io/finalizer"]
        assert stack.meeting(meeting_id)["phase"] == "pending"
        # Several server-side watch timeouts later the operator still runs and still reacts.
        time.sleep(12)
        operator.assert_running()
        control_plane.apply(meeting("second", f"{meeting_id}-2"), namespace=namespace)
        eventually(
            "a second Meeting", lambda: registered(control_plane, namespace, "second"), 30, operator.output
        )
        assert "Registered" in event_reasons(control_plane, namespace, "standup")
    assert operator.proc.returncode == 0, operator.output()[-3000:]
    output = operator.output()
    assert "Forbidden" not in output and " 403" not in output, output[-3000:]
    assert "timeoutSeconds" not in output, output[-3000:]


def _job(plane: ControlPlane, namespace: str, name: str) -> dict[str, Any] | None:
    return plane.get("job", job_name(name), namespace)


def test_simulated_meeting_runs_to_completed_across_an_operator_kill(
    control_plane: ControlPlane, namespace: str, identity: OperatorIdentity, stack: Stack, tmp_path: Path
) -> None:
    """Registered, simulator Job created (owned by the Meeting), the operator SIGKILLed and started
    again, the Job's Pod run to success, status and conditions mirrored, Events, ``Completed``."""
    meeting_id = f"sim-{uuid.uuid4().hex[:8]}"
    env = operator_env(stack)
    body = meeting("demo", meeting_id, simulate={"chunks": 3, "chunkSeconds": 2, "shuffle": True})
    with running_operator(identity, namespace, tmp_path, env) as first:
        control_plane.apply(body, namespace=namespace)
        job = eventually(
            "the simulator Job", lambda: _job(control_plane, namespace, "demo"), 60, first.output
        )
        first.kill()
    owner = job["metadata"]["ownerReferences"][0]
    found = control_plane.get("meeting", "demo", namespace)
    assert found is not None
    assert (owner["kind"], owner["name"], owner["uid"]) == ("Meeting", "demo", found["metadata"]["uid"])
    assert owner["controller"] is True and owner["blockOwnerDeletion"] is True
    assert conditions(found).get("Simulated") == "False"

    kubelet = NodelessKubelet(control_plane, namespace)
    pod = eventually(
        "the Job controller to create the simulator Pod",
        lambda: kubelet.pending_pod(f"job-name={job['metadata']['name']}"),
        60,
    )
    with running_operator(identity, namespace, tmp_path, env) as second:
        assert pod["spec"]["containers"][0]["command"] == ["audioflow"]  # the image's own command
        exit_code = kubelet.run_locally(
            pod, image_command=[sys.executable, "-m", "audioflow.cli"], cwd=tmp_path
        )
        assert exit_code == 0, kubelet.last_output
        done = eventually(
            "the Meeting to complete",
            lambda: (
                (m := control_plane.get("meeting", "demo", namespace))
                and (m.get("status") or {}).get("phase") == "Completed"
                and m
            ),
            120,
            lambda: second.output()[-4000:] + stack.logs(),
        )
    status = done["status"]
    assert conditions(done) == {
        "GatewayReachable": "True", "Registered": "True", "Simulated": "True", "Completed": "True",
    }  # fmt: skip
    assert (status["chunksReceived"], status["chunksTranscribed"], status["concatenatedThrough"]) == (3, 3, 2)
    assert status["durationSeconds"] == pytest.approx(6.0, abs=0.01)
    assert status["observedGeneration"] == done["metadata"]["generation"]
    reasons = event_reasons(control_plane, namespace, "demo")
    assert {"Registered", "SimulatorStarted", "SimulatorSucceeded", "Ended", "Completed"} <= reasons, reasons
    printed = control_plane.kubectl("get", "meetings", "--namespace", namespace).stdout
    assert "demo" in printed and "Completed" in printed, printed


def test_spec_change_is_observed(
    control_plane: ControlPlane, namespace: str, identity: OperatorIdentity, stack: Stack, tmp_path: Path
) -> None:
    meeting_id = f"chg-{uuid.uuid4().hex[:8]}"
    with running_operator(identity, namespace, tmp_path, operator_env(stack)) as operator:
        control_plane.apply(meeting("change", meeting_id), namespace=namespace)
        eventually("registered", lambda: registered(control_plane, namespace, "change"), 60, operator.output)
        control_plane.kubectl(
            "patch", "meeting", "change", "--namespace", namespace, "--type=merge",
            "-p", '{"spec": {"retention": {"policy": "Keep", "afterSeconds": 7200}}}',
        )  # fmt: skip
        changed = eventually(
            "the new generation to be observed",
            lambda: (
                (m := control_plane.get("meeting", "change", namespace))
                and m["metadata"]["generation"] == 2
                and m["status"].get("observedGeneration") == 2
                and m
            ),
            30,
            operator.output,
        )
        assert changed["spec"]["retention"] == {"policy": "Keep", "afterSeconds": 7200}


@pytest.mark.parametrize("policy", ["Delete", "Keep"])
def test_deletion_follows_the_retention_policy(
    control_plane: ControlPlane,
    namespace: str,
    identity: OperatorIdentity,
    stack: Stack,
    tmp_path: Path,
    policy: str,
) -> None:
    meeting_id = f"del-{policy.lower()}-{uuid.uuid4().hex[:8]}"
    with running_operator(identity, namespace, tmp_path, operator_env(stack)) as operator:
        control_plane.apply(meeting("doomed", meeting_id, policy=policy), namespace=namespace)
        eventually("registered", lambda: registered(control_plane, namespace, "doomed"), 60, operator.output)
        control_plane.kubectl("delete", "meeting", "doomed", "--namespace", namespace, "--timeout=60s")
        assert control_plane.get("meeting", "doomed", namespace) is None
    response = stack.get(f"/v1/meetings/{meeting_id}")
    assert response.status_code == (404 if policy == "Delete" else 200), response.text


def _replicas(plane: ControlPlane, namespace: str, name: str) -> tuple[int, int]:
    """(spec.replicas of the Deployment, spec.replicas of its newest ReplicaSet)."""
    deployment = plane.get("deployment", name, namespace) or {}
    sets = [
        rs
        for rs in plane.items("replicasets", namespace)
        if any(o.get("name") == name for o in rs["metadata"].get("ownerReferences") or [])
    ]
    newest = max(
        sets,
        key=lambda rs: int(rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]),
        default={},
    )
    return int((deployment.get("spec") or {}).get("replicas", -1)), int(
        (newest.get("spec") or {}).get("replicas", -1)
    )


def test_autoscaler_scales_the_charts_worker_from_a_real_backlog_and_back(
    control_plane: ControlPlane,
    namespace: str,
    identity: OperatorIdentity,
    stack: Stack,
    tmp_path: Path,
    redis_server_url: str,
) -> None:
    """The chart's processing Deployment (its own autoscale annotations) scaled up from a backlog on
    the real stream (``deployments/scale``, the ReplicaSet follows), down after the window once the
    backlog is gone. A look-alike Deployment the chart did not make is never scaled: RBAC refuses."""
    import redis

    prefix = f"{services.redis_prefix()}"
    values = {
        "global.redisPrefix": prefix,
        "workers.processing.autoscale": {
            "enabled": True, "min": 1, "max": 3, "targetBacklog": 2,
            "scaleDownWindowSeconds": 2, "cooldownSeconds": 0,
        },
    }  # fmt: skip
    workers = render_chart(namespace, "templates/worker-processing/deployment.yaml", values=values)
    control_plane.apply(*workers, namespace=namespace)
    name = workers[0]["metadata"]["name"]
    intruder = {**workers[0], "metadata": {**workers[0]["metadata"], "name": "a-look-alike"}}
    control_plane.apply(intruder, namespace=namespace)
    stream = workers[0]["metadata"]["annotations"]["audioflow.io/stream"]
    group = workers[0]["metadata"]["annotations"]["audioflow.io/group"]
    client = redis.Redis.from_url(redis_server_url)
    client.xgroup_create(stream, group, id="0", mkstream=True)
    try:
        env = operator_env(stack, AUDIOFLOW_REDIS_PREFIX=prefix)
        with running_operator(identity, namespace, tmp_path, env) as operator:
            for seq in range(6):  # backlog 6, target 2 per replica: 3 replicas
                client.xadd(stream, {"meeting_id": "m", "seq": str(seq)})
            eventually(
                "a scale-up to 3 that the ReplicaSet follows",
                lambda: _replicas(control_plane, namespace, name) == (3, 3),
                60,
                operator.output,
            )
            client.delete(stream)
            client.xgroup_create(stream, group, id="0", mkstream=True)
            eventually(
                "a scale-down to 1 after the window",
                lambda: _replicas(control_plane, namespace, name) == (1, 1),
                60,
                operator.output,
            )
            untouched = control_plane.get("deployment", "a-look-alike", namespace)
            assert untouched is not None and untouched["spec"]["replicas"] == 1
            refusals = [
                e["message"]
                for e in control_plane.items("events", namespace)
                if e["involvedObject"].get("name") == "a-look-alike" and e["reason"] == "ScaleRefused"
            ]
            assert len(refusals) == 1 and "403 Forbidden" in refusals[0], refusals
            scaled = [
                e["message"]
                for e in control_plane.items("events", namespace)
                if e["involvedObject"].get("name") == name and e["reason"] == "Scaled"
            ]
            assert any("Scaled up from 1 to 3" in m for m in scaled), scaled
            assert any("Scaled down from 3 to 1" in m for m in scaled), scaled
    finally:
        client.delete(stream)
        client.close()
