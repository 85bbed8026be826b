"""The three images, built with podman (``make images``: ``tests/kube/images.sh``, no Docker engine, no
registry) and run as the chart runs them: the user, read-only root filesystem, dropped capabilities,
no privilege escalation, memory limit, volumes, environment and probes are all read from the chart's
rendered Deployments and turned into ``podman run`` flags (:func:`podman_run_args`).

The containers share the host's network (``--network host``) so that they reach the tests' own Redis,
PostgreSQL and API server on 127.0.0.1; for that one reason the gateway listens on 127.0.0.1 and a free
port instead of the chart's 0.0.0.0:8080, and the metrics and health ports are free ports. In-cluster
addresses (the gateway's Service, the API server's) become their 127.0.0.1 counterparts.

- gateway image: the chart's ``migrate`` init container, then the gateway; its probes pass, ``/healthz``
  answers and ``/`` is the page;
- workers image: processing and concat containers next to the gateway transcribe and append a signed
  chunk of real speech;
- operator image: logs in with a ServiceAccount token mounted where Kubernetes mounts it, with the
  chart's own Role, and registers a Meeting on the real API server (tests/kube/controlplane.py).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import socket
import subprocess
import urllib.parse
import uuid
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from audioflow.core.signing import generate_secret, sign_chunk
from audioflow.core.wav import canonical_header, parse_wav, pcm_view
from audioflow.workers.simulate import cut_chunks, load_speech
from tests import services
from tests.kube import pod_env
from tests.kube.controlplane import ROOT, ControlPlane
from tests.kube.operator_process import apply_crd, install_identity, render_chart
from tests.services import eventually

#: A cold build (base images, then the three images) takes minutes; it happens in the first test's setup.
pytestmark = pytest.mark.timeout(1800)
SCRIPT = ROOT / "tests" / "kube" / "images.sh"
CONTAINERS_CONF = ROOT / "tests" / "kube" / "containers.conf"
UID = 10001
MEMBERS = ("api", "workers", "operator")
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
#: Mounts every container has (kernel interfaces and podman's own); the rest must be the chart's volumes.
SYSTEM_MOUNTS = ("/proc", "/dev", "/sys")


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}
    result = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, env=env)
    if check and result.returncode != 0:
        raise AssertionError(
            f"podman {' '.join(args[:3])}… failed ({result.returncode}): {result.stderr[-3000:]}"
        )
    return result


# ---- the chart's Deployments as podman flags -------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """One Deployment of the chart: its pod spec and (by name) its containers."""

    pod: dict[str, Any]

    @classmethod
    def render(cls, template: str, namespace: str = "default") -> Workload:
        (deployment,) = render_chart(namespace, template)
        assert deployment["kind"] == "Deployment"
        pod: dict[str, Any] = deployment["spec"]["template"]["spec"]
        return cls(pod)

    def container(self, name: str, init: bool = False) -> dict[str, Any]:
        found = [c for c in self.pod.get("initContainers" if init else "containers", []) if c["name"] == name]
        assert len(found) == 1, f"no container {name} in the chart's pod spec"
        container: dict[str, Any] = found[0]
        return container


def config_map() -> dict[str, str]:
    (found,) = render_chart("default", "templates/configmap.yaml")
    data: dict[str, str] = found["data"]
    return data


def memory_flag(quantity: str) -> str:
    units = {"Ki": "k", "Mi": "m", "Gi": "g"}
    for suffix, flag in units.items():
        if quantity.endswith(suffix):
            return quantity[: -len(suffix)] + flag
    return quantity


def container_env(
    container: dict[str, Any], secrets: dict[str, str], namespace: str, overrides: dict[str, str]
) -> dict[str, str]:
    """The container's environment as Kubernetes would build it (``pod_env``): the chart's ConfigMap,
    Secret keys from ``secrets`` whatever the Secret's name, the namespace from the downward API; then
    ``overrides``."""
    pod = {"metadata": {"namespace": namespace}, "spec": {}}
    lookups = pod_env.Lookups(secret=lambda _name: secrets, config_map=lambda _name: config_map())
    return {**pod_env.container_env(container, pod, lookups), **overrides}


def podman_run_args(
    workload: Workload,
    container: dict[str, Any],
    *,
    claims: dict[str, Path],
    env: dict[str, str],
    extra_mounts: tuple[str, ...] = (),
) -> list[str]:
    """``podman run`` flags for ``container`` as the chart declares it: the pod's and the container's
    securityContext, the memory limit, the volumes (an emptyDir is a tmpfs of its size limit, a
    PersistentVolumeClaim the host folder ``claims`` names), and ``env``."""
    pod_context = workload.pod.get("securityContext", {})
    context = {**pod_context, **container.get("securityContext", {})}
    assert context.get("runAsNonRoot") is True
    user = context["runAsUser"]
    flags = [f"--user={user}:{context.get('runAsGroup', user)}"]
    if "fsGroup" in pod_context:
        flags.append(f"--group-add={pod_context['fsGroup']}")
    if context.get("readOnlyRootFilesystem"):
        flags += ["--read-only", "--read-only-tmpfs=false"]  # podman would add writable /tmp, /run otherwise
    flags += [f"--cap-drop={cap}" for cap in context.get("capabilities", {}).get("drop", [])]
    flags += [f"--cap-add={cap}" for cap in context.get("capabilities", {}).get("add", [])]
    if context.get("allowPrivilegeEscalation") is False:
        flags += ["--security-opt", "no-new-privileges"]
    assert context.get("seccompProfile", {}).get("type") == "RuntimeDefault"  # podman's default profile
    limit = container.get("resources", {}).get("limits", {}).get("memory")
    if limit:
        flags.append(f"--memory={memory_flag(limit)}")
    volumes = {v["name"]: v for v in workload.pod.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        target = mount["mountPath"]
        readonly = ",readonly=true" if mount.get("readOnly") else ""
        if "emptyDir" in volume:
            size = volume["emptyDir"].get("sizeLimit")
            size_option = f",tmpfs-size={memory_flag(size)}" if size else ""
            flags.append(f"--mount=type=tmpfs,destination={target},tmpfs-mode=1777{size_option}{readonly}")
        elif "persistentVolumeClaim" in volume:
            source = claims[volume["persistentVolumeClaim"]["claimName"]]
            flags.append(f"--mount=type=bind,source={source},destination={target}{readonly}")
        else:
            raise AssertionError(f"no stand-in for volume {volume}")
    flags += [f"--mount={m}" for m in extra_mounts]
    for key, value in sorted(env.items()):
        flags += ["--env", f"{key}={value}"]
    return flags


@dataclass
class Container:
    name: str
    spec: dict[str, Any]

    def logs(self) -> str:
        result = podman("logs", self.name, check=False)
        return f"==== {self.name}\n{(result.stdout + result.stderr)[-5000:]}"

    def running(self) -> bool:
        state = podman("container", "inspect", "--format", "{{.State.Running}}", self.name, check=False)
        return state.stdout.strip() == "true"

    def exit_code(self) -> int:
        found = podman("container", "inspect", "--format", "{{.State.ExitCode}}", self.name)
        return int(found.stdout.strip())

    def stop(self) -> int:
        """SIGTERM, as the kubelet sends it; the exit code (137 if it had to be killed)."""
        podman("stop", "--time", "20", self.name, check=False, timeout=60)
        return self.exit_code()

    def remove(self) -> None:
        podman("rm", "--force", "--time", "5", self.name, check=False, timeout=60)

    def wait_probe(self, probe_name: str, ports: dict[str, int]) -> None:
        """The chart's probe (httpGet or tcpSocket) passes within its own failure budget."""
        probe = self.spec[probe_name]
        port = probe.get("httpGet", probe.get("tcpSocket", {}))["port"]
        port_number = ports[port] if isinstance(port, str) else port
        budget = probe.get("initialDelaySeconds", 0) + probe.get("periodSeconds", 10) * probe.get(
            "failureThreshold", 3
        )

        def passes() -> bool:
            assert self.running(), f"{self.name} exited\n{self.logs()}"
            if "httpGet" in probe:
                with contextlib.suppress(httpx.TransportError):
                    url = f"http://127.0.0.1:{port_number}{probe['httpGet']['path']}"
                    return 200 <= httpx.get(url, timeout=probe.get("timeoutSeconds", 1)).status_code < 400
                return False
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", port_number), timeout=1),
            ):
                return True
            return False

        eventually(f"the {probe_name} of {self.name}", passes, budget, self.logs)

    def assert_restricted(self) -> None:
        """What the kernel says about the container's main process: the chart's user and group, no
        capability at all, no-new-privileges, a seccomp filter; the root filesystem is read-only and
        the only writable filesystems are the chart's volumes."""
        status = dict(
            line.split(":", 1)
            for line in podman("exec", self.name, "cat", "/proc/1/status").stdout.splitlines()
        )
        assert status["Uid"].split() == [str(UID)] * 4, status["Uid"]
        assert status["Gid"].split() == [str(UID)] * 4, status["Gid"]
        for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            assert int(status[cap], 16) == 0, f"{cap}: {status[cap]}"
        assert status["NoNewPrivs"].strip() == "1"
        assert status["Seccomp"].strip() == "2", "seccomp filter mode"
        mounts = {}
        for line in podman("exec", self.name, "cat", "/proc/1/mountinfo").stdout.splitlines():
            fields = line.split()
            mounts[fields[4]] = fields[5].split(",")
        assert "ro" in mounts["/"], f"root filesystem: {mounts['/']}"
        writable = {
            path
            for path, options in mounts.items()
            if "rw" in options and not any(path == s or path.startswith(s + "/") for s in SYSTEM_MOUNTS)
        }
        declared = {m["mountPath"] for m in self.spec.get("volumeMounts", [])}
        assert writable <= declared, f"writable beyond the chart's volumes: {writable - declared}"
        tried = podman("exec", self.name, "python3", "-c", "open('/app/probe', 'w')", check=False)
        assert tried.returncode != 0 and "Read-only file system" in tried.stderr, tried.stderr


@contextlib.contextmanager
def started(
    name: str, image: str, flags: list[str], args: list[str], spec: dict[str, Any]
) -> Iterator[Container]:
    container = Container(name, spec)
    podman("run", "--detach", "--pull=never", "--network=host", f"--name={name}", *flags, image, *args)
    try:
        yield container
    finally:
        container.remove()


# ---- fixtures ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def images() -> dict[str, str]:
    """The three images, built (or found up to date) once for the module by the script `make images`
    runs; keyed by the chart's image names."""
    if shutil.which("podman") is None:
        pytest.fail(
            "podman is missing: run `make images` (it installs Debian's podman and builds the images)"
        )
    env = {k: v for k, v in os.environ.items() if k != "AUDIOFLOW_IMAGE_TAG"}  # the chart's appVersion
    result = subprocess.run([str(SCRIPT)], capture_output=True, text=True, timeout=1800, env=env)
    assert result.returncode == 0, f"images.sh failed:\n{result.stderr[-6000:]}"
    built = {f"audioflow-{member}:{_tag()}": f"localhost/audioflow-{member}:{_tag()}" for member in MEMBERS}
    for image in built.values():
        assert podman("image", "exists", image, check=False).returncode == 0, f"{image} was not built"
    return built


@pytest.fixture(scope="module")
def run_id() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def data_volume(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chart's data PersistentVolumeClaim: a folder of root:10001, setgid, as fsGroup leaves it."""
    path = tmp_path_factory.mktemp("data-pvc")
    os.chown(path, 0, UID)
    path.chmod(0o2775)
    return path


@dataclass
class Gateway:
    container: Container
    port: int
    token: str
    secret: str
    secrets: dict[str, str]
    prefix: str
    client: httpx.Client

    def put_chunk(self, meeting_id: str, seq: int, body: bytes) -> httpx.Response:
        headers = {"content-type": "audio/wav", **sign_chunk(self.secret, meeting_id, seq, body).as_dict()}
        return self.client.put(f"/v1/meetings/{meeting_id}/chunks/{seq}", content=body, headers=headers)

    def get(self, path: str) -> httpx.Response:
        return self.client.get(path, headers={"authorization": f"Bearer {self.token}"})


@pytest.fixture(scope="module")
def gateway(
    images: dict[str, str],
    run_id: str,
    data_volume: Path,
    redis_server_url: str,
    postgres_server_url: str,
) -> Iterator[Gateway]:
    """The chart's gateway pod from the gateway image: its ``migrate`` init container to completion,
    then the gateway, on PostgreSQL and Redis; its startup and readiness probes have passed."""
    workload = Workload.render("templates/gateway/deployment.yaml")
    spec, init = workload.container("gateway"), workload.container("migrate", init=True)
    assert spec["image"] in images and init["image"] == spec["image"]
    prefix = services.redis_prefix()
    port = services.free_port()
    token = "image-test-" + uuid.uuid4().hex
    secret = generate_secret()
    with services.fresh_postgres_database(postgres_server_url) as database_url:
        secrets = {
            "redis-url": redis_server_url,
            "database-url": database_url,
            "webhook-secret": secret,
            "api-token": token,
            "admin-token": "image-admin-" + uuid.uuid4().hex,  # the chart's Secret has both scopes
        }
        overrides = {"AUDIOFLOW_REDIS_PREFIX": prefix}
        claims = {"af-audioflow-data": data_volume}
        migrate = Container(f"af-{run_id}-migrate", init)
        init_env = container_env(init, secrets, "t", overrides)
        init_flags = podman_run_args(workload, init, claims=claims, env=init_env)
        ran = podman(
            "run", "--pull=never", "--network=host", f"--name={migrate.name}", *init_flags,
            init["image"], *pod_env.container_args(init, init_env), timeout=300, check=False,
        )  # fmt: skip
        try:
            assert ran.returncode == 0, f"the migrate init container failed:\n{ran.stdout}\n{ran.stderr}"
        finally:
            migrate.remove()
        # The chart's args, but 127.0.0.1 and a free port: the container shares the host's network.
        env = container_env(spec, secrets, "t", overrides)
        args = pod_env.container_args(spec, env)
        args[args.index("--host") + 1] = "127.0.0.1"
        args[args.index("--port") + 1] = str(port)
        flags = podman_run_args(workload, spec, claims=claims, env=env)
        with (
            started(f"af-{run_id}-gateway", spec["image"], flags, args, spec) as container,
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client,
        ):
            container.wait_probe("startupProbe", {"http": port})
            container.wait_probe("readinessProbe", {"http": port})
            yield Gateway(container, port, token, secret, secrets, prefix, client)
            services.delete_prefix(redis_server_url, prefix)


# ---- the images ----------------------------------------------------------------------------------------


def test_the_three_images_build_without_a_docker_engine(images: dict[str, str]) -> None:
    """Built by podman from the Dockerfiles on locally made base images; each runs `audioflow` as the
    chart's non-root user and carries only the interpreter and its member's environment."""
    for name, image in images.items():
        (inspected,) = json.loads(podman("image", "inspect", image).stdout)
        config = inspected["Config"]
        assert config["User"] == f"{UID}:{UID}"
        assert config["Entrypoint"] == ["audioflow"]
        script = (
            "command -v uv node npm; python3 --version; /app/.venv/bin/audioflow --help >/dev/null && echo ok"
        )
        found = podman(
            "run", "--rm", "--pull=never", "--network=none", "--read-only", "--cap-drop=ALL",
            "--entrypoint=sh", image, "-c", script,
        ).stdout  # fmt: skip
        lines = found.splitlines()  # no uv, node or npm: the interpreter and the environment only
        assert len(lines) == 2 and lines[0].startswith("Python 3.11.") and lines[1] == "ok", (
            f"{name}: {found}"
        )


def _tag() -> str:
    for line in (ROOT / "charts" / "audioflow" / "Chart.yaml").read_text().splitlines():
        if line.startswith("appVersion:"):
            return line.split(":", 1)[1].strip().strip('"')
    raise AssertionError("Chart.yaml has no appVersion")


def test_gateway_image_under_the_restricted_security_context_serves_healthz_and_the_page(
    gateway: Gateway,
) -> None:
    gateway.container.assert_restricted()
    health = gateway.client.get("/healthz")
    assert health.status_code == 200, health.text
    ready = gateway.client.get("/readyz")
    assert ready.status_code == 200, ready.text
    page = gateway.client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "<!doctype html>" in page.text.lower() and '<div id="root">' in page.text
    # The page's script, built by the image's node stage, is served too.
    script = page.text.split('<script type="module" crossorigin src="', 1)[1].split('"', 1)[0]
    asset = gateway.client.get(urllib.parse.urljoin(str(page.url), script))
    assert asset.status_code == 200 and "javascript" in asset.headers["content-type"]
    assert gateway.get("/v1/meetings").status_code == 200


def test_workers_image_under_the_restricted_security_context_transcribes_and_appends_a_chunk(
    images: dict[str, str], gateway: Gateway, run_id: str, data_volume: Path
) -> None:
    """The chart's processing and concat pods from the workers image, next to the gateway image: a
    signed chunk of real speech is transcribed and appended to the recording."""
    fmt, pcm = load_speech()
    chunk = cut_chunks(fmt, pcm, 6.0, 1)[0]
    meeting_id = f"img-{run_id}"
    with contextlib.ExitStack() as stack:
        workers = []
        for kind in ("processing", "concat"):
            workload = Workload.render(f"templates/worker-{kind}/deployment.yaml")
            spec = workload.container(kind)
            assert spec["image"] in images
            metrics = services.free_port()
            env = container_env(
                spec,
                gateway.secrets,
                "t",
                {"AUDIOFLOW_REDIS_PREFIX": gateway.prefix, "AUDIOFLOW_METRICS_PORT": str(metrics)},
            )
            flags = podman_run_args(workload, spec, claims={"af-audioflow-data": data_volume}, env=env)
            container = stack.enter_context(
                started(f"af-{run_id}-{kind}", spec["image"], flags, pod_env.container_args(spec, env), spec)
            )
            workers.append((container, metrics))
        for container, metrics in workers:
            container.wait_probe("startupProbe", {"metrics": metrics})
            container.assert_restricted()
        logs = lambda: "\n".join(c.logs() for c, _ in workers) + gateway.container.logs()  # noqa: E731

        accepted = gateway.put_chunk(meeting_id, 0, chunk)
        assert accepted.status_code == 201, accepted.text

        def done() -> dict[str, Any] | None:
            found: dict[str, Any] = gateway.get(f"/v1/meetings/{meeting_id}").json()
            return found if found["chunks_transcribed"] == 1 and found["concatenated_through"] == 0 else None

        eventually("the chunk to be transcribed and appended", done, 120, logs)
        transcript = gateway.get(f"/v1/meetings/{meeting_id}/transcript").json()
        (segment,) = transcript["segments"]
        assert segment["seq"] == 0 and segment["error"] is None
        words = set(segment["text"].lower().split())
        reference = {"good", "morning", "everyone", "thanks", "joining", "weekly", "planning", "meeting"}
        assert len(words & reference) >= 2, f"transcript {segment['text']!r}"
        recording = gateway.get(f"/v1/meetings/{meeting_id}/recording.wav")
        assert recording.status_code == 200
        body = bytes(pcm_view(chunk, parse_wav(chunk)))
        assert recording.content == canonical_header(parse_wav(chunk).format, len(body)) + body
        with wave.open(io.BytesIO(recording.content)) as reader:
            assert reader.getnframes() == len(body) // fmt.block_align
        # The recording lives on the shared volume, written by the concat container as the chart's user.
        files = [p for p in data_volume.rglob("*") if p.is_file()]
        assert files and all(p.stat().st_uid == UID for p in files)
        for container, _ in workers:
            assert container.stop() == 0, (
                f"{container.name} did not exit cleanly on SIGTERM\n{container.logs()}"
            )


def test_operator_image_under_the_restricted_security_context_reconciles_a_meeting(
    images: dict[str, str],
    gateway: Gateway,
    control_plane: ControlPlane,
    namespace: str,
    run_id: str,
    tmp_path: Path,
) -> None:
    """The chart's operator pod from the operator image, logged in with a TokenRequest token of the
    chart's operator ServiceAccount (the chart's Role bound) mounted where Kubernetes mounts it,
    against the real API server: a Meeting is registered with the gateway image and gets its status."""
    apply_crd(control_plane)
    identity = install_identity(control_plane, namespace, tmp_path)
    control_plane.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "af-audioflow", "namespace": namespace},
            "stringData": {"webhook-secret": gateway.secret},
        },
        namespace=namespace,
    )
    workload = Workload.render("templates/operator/deployment.yaml", namespace)
    assert workload.pod["serviceAccountName"] == identity.service_account
    assert workload.pod.get("automountServiceAccountToken", True), "the operator needs its token"
    spec = workload.container("operator")
    assert spec["image"] in images

    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text(control_plane.token(identity.service_account, namespace))
    shutil.copy(control_plane.pki.ca_cert, account / "ca.crt")
    (account / "namespace").write_text(namespace)
    for path in (account, *account.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)

    server = urllib.parse.urlsplit(control_plane.server)
    health, metrics = services.free_port(), services.free_port()
    env = container_env(
        spec,
        gateway.secrets,
        namespace,
        {
            # In a cluster: the gateway's Service and the kubernetes Service; here their 127.0.0.1.
            "AUDIOFLOW_GATEWAY_URL": f"http://127.0.0.1:{gateway.port}",
            "KUBERNETES_SERVICE_HOST": str(server.hostname),
            "KUBERNETES_SERVICE_PORT": str(server.port),
            "AUDIOFLOW_REDIS_PREFIX": gateway.prefix,
            "AUDIOFLOW_HEALTH_PORT": str(health),
            "AUDIOFLOW_METRICS_PORT": str(metrics),
        },
    )
    assert server.hostname == "127.0.0.1"
    flags = podman_run_args(
        workload,
        spec,
        claims={},
        env=env,
        extra_mounts=(f"type=bind,source={account},destination={SERVICE_ACCOUNT_DIR},readonly=true",),
    )
    meeting_id = f"op-{run_id}"
    args = pod_env.container_args(spec, env)
    with started(f"af-{run_id}-operator", spec["image"], flags, args, spec) as operator:
        operator.wait_probe("livenessProbe", {"health": health, "metrics": metrics})
        operator.assert_restricted()
        control_plane.apply(
            {
                "apiVersion": "audioflow.io/v1alpha1",
                "kind": "Meeting",
                "metadata": {"name": "standup"},
                "spec": {
                    "meetingId": meeting_id,
                    "audio": {"sampleRate": 16000, "channels": 1, "bitsPerSample": 16},
                    "retention": {"policy": "Delete"},
                },
            },
            namespace=namespace,
        )

        def registered() -> dict[str, Any] | None:
            found = control_plane.get("meeting", "standup", namespace)
            conditions = {
                c["type"]: c["status"] for c in ((found or {}).get("status") or {}).get("conditions", [])
            }
            return found if conditions.get("Registered") == "True" else None

        found = eventually("the Meeting to be registered", registered, 60, operator.logs)
        assert found["status"]["phase"] == "Pending"
        assert found["metadata"]["finalizers"] == ["audioflow.io/finalizer"]
        at_gateway = gateway.get(f"/v1/meetings/{meeting_id}")
        assert at_gateway.status_code == 200 and at_gateway.json()["phase"] == "pending", at_gateway.text
        # Deleting it goes through the operator's finalizer (retention Delete: the gateway forgets it).
        control_plane.kubectl("delete", "meeting", "standup", "--namespace", namespace, "--timeout=60s")
        assert gateway.get(f"/v1/meetings/{meeting_id}").status_code == 404
        assert operator.running(), operator.logs()
        assert operator.stop() == 0, f"the operator did not exit cleanly on SIGTERM\n{operator.logs()}"
        logs = operator.logs()
        assert "Forbidden" not in logs and " 403" not in logs, logs
