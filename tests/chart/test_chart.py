"""The Helm chart, checked offline: lint, schema, rendering, Kubernetes validation, wiring, security."""

from __future__ import annotations

import base64
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from audioflow.core.signing import decode_secret
from tests.chart import tools
from tests.chart.tools import CHART, ROOT, Manifest, find, one

pytestmark = pytest.mark.usefixtures("helm")

RELEASE, NAMESPACE = "af", "media"
GATEWAY, PROCESSING, CONCAT, OPERATOR = (
    f"af-audioflow-{c}" for c in ("gateway", "processing", "concat", "operator")
)
SECRET = "af-audioflow"


# ---- lint, schema, validation ------------------------------------------------------------------------


def test_lint_strict_passes() -> None:
    result = tools.run_helm("lint", "--strict", str(CHART))
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize(
    ("values_file", "messages"),
    [
        (
            "bad-autoscale.yaml",
            [
                "workers.processing.autoscale.min: Must be greater than or equal to 0",
                "workers.processing.autoscale.targetBacklog: Must be greater than or equal to 1",
                "workers.processing.autoscale: Additional property maxReplicas is not allowed",
            ],
        ),
        (
            "bad-connections.yaml",
            [
                "(root): Additional property gatway is not allowed",
                "database.url: Does not match pattern",
                "redis.url: Does not match pattern",
                "gateway.replicas: Invalid type. Expected: integer, given: string",
                'gateway.image.pullPolicy: gateway.image.pullPolicy must be one of the following: "Always", '
                '"IfNotPresent", "Never"',
            ],
        ),
    ],
)
def test_schema_rejects_bad_values(values_file: str, messages: list[str]) -> None:
    values = str(tools.HERE / "values" / values_file)
    for command in (["lint", "--strict"], ["template", RELEASE]):
        result = tools.run_helm(*command, str(CHART), "-f", values, check=False)
        assert result.returncode != 0, f"helm {command[0]} accepted {values_file}"
        output = result.stdout + result.stderr
        assert "values don't meet the specifications of the schema" in output
        for message in messages:
            assert message in output, f"{message!r} not in:\n{output}"


def test_min_above_max_is_refused() -> None:
    result = tools.run_helm(
        "template", RELEASE, str(CHART), "--set", "workers.concat.autoscale.min=5", check=False
    )
    assert result.returncode != 0
    assert "workers.concat.autoscale: min (5) must not exceed max (2)" in result.stderr


def _validate_all(tmp_path: Path, text: str, name: str) -> None:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    newest = tools.kubernetes_versions()[-1]
    for version in ("1.30.0", newest):
        result = tools.kubernetes_validate(path, version)
        assert result.returncode == 0, f"{name} on Kubernetes {version}:\n{result.stdout}{result.stderr}"


def test_rendered_manifests_validate_for_kubernetes_1_30_and_newest(tmp_path: Path) -> None:
    newest = tuple(int(part) for part in tools.kubernetes_versions()[-1].split("."))
    assert newest >= (1, 33), "kubernetes-validate knows no recent Kubernetes"
    _validate_all(tmp_path, tools.template_text(), "defaults")
    # Every optional object on (the ServiceMonitor is a custom resource: kubernetes-validate has no schema).
    everything = tools.template_text(
        "--set",
        "gateway.ingress.enabled=true,gateway.ingress.className=nginx,"
        "workers.processing.autoscale.enabled=false,persistence.enabled=false,"
        "operator.rbac.secretNames={other-webhook}",
    )
    _validate_all(tmp_path, everything, "everything")


def test_render_is_complete(rendered: list[Manifest]) -> None:
    kinds = sorted({(m["kind"], m["metadata"]["name"]) for m in rendered})
    for expected in [
        ("Deployment", GATEWAY),
        ("Deployment", PROCESSING),
        ("Deployment", CONCAT),
        ("Deployment", OPERATOR),
        ("Service", GATEWAY),
        ("Service", PROCESSING),
        ("Service", CONCAT),
        ("Service", OPERATOR),
        ("ServiceAccount", GATEWAY),
        ("ServiceAccount", OPERATOR),
        ("PodDisruptionBudget", GATEWAY),
        ("PodDisruptionBudget", PROCESSING),
        ("PodDisruptionBudget", CONCAT),
        ("ConfigMap", "af-audioflow-config"),
        ("Secret", SECRET),
        ("PersistentVolumeClaim", "af-audioflow-data"),
        ("CustomResourceDefinition", "meetings.audioflow.io"),
        ("Role", OPERATOR),
        ("RoleBinding", OPERATOR),
    ]:
        assert expected in kinds
    for m in rendered:
        assert len(m["metadata"]["name"]) <= 63
        if m["kind"] not in {"CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}:
            assert m["metadata"]["namespace"] == NAMESPACE, m["metadata"]["name"]


def test_long_release_names_are_cut_to_63(helm: tools.Binaries) -> None:
    release = "a-release-name-of-fifty-three-characters-helms-limits"
    assert len(release) == 53
    rendered = tools.template(release=release)
    for m in rendered:
        assert len(m["metadata"]["name"]) <= 63, m["metadata"]["name"]
    names = {m["metadata"]["name"] for m in rendered if m["kind"] == "Deployment"}
    assert {n.rsplit("-", 1)[1] for n in names} == {"gateway", "processing", "concat", "operator"}


def test_labels_and_selectors(rendered: list[Manifest]) -> None:
    for m in rendered:
        labels = m["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["helm.sh/chart"] == "audioflow-0.1.0"
    for deployment in find(rendered, "Deployment"):
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert set(selector) == {
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/component",
        }, "selectors are immutable: never the version"
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= pod_labels.items()
    components = {
        d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"]
        for d in find(rendered, "Deployment")
    }
    assert components == {"gateway", "processing", "concat", "operator"}


def test_services_select_their_pods_by_named_ports(rendered: list[Manifest]) -> None:
    for service in find(rendered, "Service"):
        pods = [
            d
            for d in find(rendered, "Deployment")
            if service["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(pods) == 1, service["metadata"]["name"]
        ports = {
            p["name"] for c in pods[0]["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])
        }
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports


def test_pdbs_select_one_deployment_each(rendered: list[Manifest]) -> None:
    for pdb in find(rendered, "PodDisruptionBudget"):
        selector = pdb["spec"]["selector"]["matchLabels"]
        matching = [
            d
            for d in find(rendered, "Deployment")
            if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert [d["metadata"]["name"] for d in matching] == [pdb["metadata"]["name"]]
    # The operator runs one replica: a PDB would block every node drain.
    assert not find(rendered, "PodDisruptionBudget", OPERATOR)


# ---- security -----------------------------------------------------------------------------------------


def _containers(spec: Manifest) -> list[Manifest]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def test_pods_run_non_root_with_read_only_root_filesystems(rendered: list[Manifest]) -> None:
    specs = tools.pod_specs(rendered)
    assert len(specs) == 4
    for name, spec in specs:
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, name
        assert pod["runAsUser"] > 0, name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC"), name
        volumes = {v["name"]: v for v in spec["volumes"]}
        for container in _containers(spec):
            where = f"{name} {container['name']}"
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["runAsNonRoot"] is True, where
            assert security["capabilities"] == {"drop": ["ALL"]}, where
            assert not security.get("privileged"), where
            assert security["seccompProfile"] == {"type": "RuntimeDefault"}, where
            tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
            assert tmp and "emptyDir" in volumes[tmp[0]["name"]], where
            resources = container["resources"]
            assert resources["requests"]["cpu"] and resources["requests"]["memory"], where
            assert resources["limits"]["memory"], where
            assert not container["image"].endswith(":latest"), where


def test_only_the_operator_gets_an_api_token(rendered: list[Manifest]) -> None:
    for name, spec in tools.pod_specs(rendered):
        assert spec.get("automountServiceAccountToken", True) is (name == f"Deployment/{OPERATOR}"), name
    for account in find(rendered, "ServiceAccount"):
        if account["metadata"]["name"] != OPERATOR:
            assert account["automountServiceAccountToken"] is False


def test_component_security_context_merges_over_global(helm: tools.Binaries) -> None:
    rendered = tools.template("--set", "gateway.securityContext.runAsUser=20000")
    gateway = one(rendered, "Deployment", GATEWAY)["spec"]["template"]["spec"]["containers"][0]
    assert gateway["securityContext"]["runAsUser"] == 20000
    assert gateway["securityContext"]["readOnlyRootFilesystem"] is True


# ---- RBAC ---------------------------------------------------------------------------------------------


def _rules(rendered: list[Manifest], kind: str) -> list[Manifest]:
    return [rule for role in find(rendered, kind) for rule in role["rules"]]


def test_rbac_has_no_wildcards(rendered: list[Manifest]) -> None:
    for kind in ("Role", "ClusterRole"):
        for rule in _rules(rendered, kind):
            for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert "*" not in rule.get(field, []), rule
                assert not any("*" in item for item in rule.get(field, [])), rule


def _allowed(rules: list[Manifest], group: str, resource: str, verb: str, name: str | None = None) -> bool:
    for rule in rules:
        if group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"]:
            names = rule.get("resourceNames")
            if not names or (name is not None and name in names):
                return True
    return False


def test_operator_rbac_is_least_privilege(rendered: list[Manifest]) -> None:
    role = _rules(rendered, "Role")
    # What it needs.
    for resource, verbs in {
        "meetings": ["get", "list", "watch", "patch", "delete"],
        "meetings/status": ["get", "patch"],
        "meetings/finalizers": ["update"],
    }.items():
        for verb in verbs:
            assert _allowed(role, "audioflow.io", resource, verb), (resource, verb)
    for verb in ("get", "create", "delete"):
        assert _allowed(role, "batch", "jobs", verb)
    assert _allowed(role, "", "events", "create")
    for verb in ("get", "list", "watch"):
        assert _allowed(role, "apps", "deployments", verb)
    # Scale only this release's workers.
    for worker in (PROCESSING, CONCAT):
        assert _allowed(role, "apps", "deployments/scale", "patch", worker)
    assert not _allowed(role, "apps", "deployments/scale", "patch", GATEWAY)
    assert not _allowed(role, "apps", "deployments/scale", "patch", "someone-elses")
    scale = [r for r in role if "deployments/scale" in r["resources"]]
    assert [sorted(r["resourceNames"]) for r in scale] == [sorted([PROCESSING, CONCAT])]
    # Never write Deployments themselves, never other workloads, never RBAC.
    for verb in ("create", "update", "patch", "delete"):
        assert not _allowed(role, "apps", "deployments", verb)
    for group, resource in [("", "pods"), ("", "configmaps"), ("rbac.authorization.k8s.io", "roles")]:
        assert not any(_allowed(role, group, resource, verb) for verb in ("get", "create", "patch", "delete"))
    # Secrets: read only the webhook Secret by name, never list them.
    assert _allowed(role, "", "secrets", "get", SECRET)
    assert not _allowed(role, "", "secrets", "get", "some-other-secret")
    assert not _allowed(role, "", "secrets", "list")
    # Cluster-wide: read-only, CRDs only.
    cluster = _rules(rendered, "ClusterRole")
    assert cluster == [
        {
            "apiGroups": ["apiextensions.k8s.io"],
            "resources": ["customresourcedefinitions"],
            "verbs": ["list", "watch"],
        }
    ]


def test_operator_rbac_follows_values(helm: tools.Binaries) -> None:
    rendered = tools.template(
        "--set",
        "workers.concat.autoscale.enabled=false,operator.rbac.clusterObservation=false,"
        "operator.rbac.secretNames={meeting-hooks}",
    )
    role = _rules(rendered, "Role")
    assert _allowed(role, "apps", "deployments/scale", "patch", PROCESSING)
    assert not _allowed(role, "apps", "deployments/scale", "patch", CONCAT)
    assert _allowed(role, "", "secrets", "get", "meeting-hooks")
    assert not find(rendered, "ClusterRole") and not find(rendered, "ClusterRoleBinding")
    assert not find(tools.template("--set", "operator.enabled=false"), "Role")


def test_bindings_name_only_the_operator(rendered: list[Manifest]) -> None:
    for kind in ("RoleBinding", "ClusterRoleBinding"):
        for binding in find(rendered, kind):
            assert binding["subjects"] == [
                {"kind": "ServiceAccount", "name": OPERATOR, "namespace": NAMESPACE}
            ]
            role_kind = binding["roleRef"]["kind"]
            assert find(rendered, role_kind, binding["roleRef"]["name"])


# ---- workloads ----------------------------------------------------------------------------------------


def _container(rendered: list[Manifest], deployment: str) -> Manifest:
    containers: list[Manifest] = one(rendered, "Deployment", deployment)["spec"]["template"]["spec"][
        "containers"
    ]
    assert len(containers) == 1
    return containers[0]


def test_operator_runs_alone_with_recreate(rendered: list[Manifest]) -> None:
    spec = one(rendered, "Deployment", OPERATOR)["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}


def test_probes(rendered: list[Manifest]) -> None:
    gateway = _container(rendered, GATEWAY)
    assert gateway["args"] == ["api", "--host", "0.0.0.0", "--port", "8080"]  # noqa: S104 (in the pod)
    assert gateway["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert gateway["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    operator = _container(rendered, OPERATOR)
    assert operator["args"] == ["operator"]
    assert operator["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    health = {p["name"]: p["containerPort"] for p in operator["ports"]}["health"]
    assert {"name": "AUDIOFLOW_HEALTH_PORT", "value": str(health)} in operator["env"]
    for worker, kind in ((PROCESSING, "processing"), (CONCAT, "concat")):
        container = _container(rendered, worker)
        assert container["args"] == ["worker", kind]
        assert container["livenessProbe"]["tcpSocket"] == {"port": "metrics"}


def test_gateway_migrates_first(rendered: list[Manifest]) -> None:
    spec = one(rendered, "Deployment", GATEWAY)["spec"]["template"]["spec"]
    assert [c["args"] for c in spec["initContainers"]] == [["migrate"]]
    off = tools.template("--set", "gateway.migrate=false")
    assert "initContainers" not in one(off, "Deployment", GATEWAY)["spec"]["template"]["spec"]


def test_data_volume_is_shared_by_gateway_and_workers(rendered: list[Manifest]) -> None:
    claim = one(rendered, "PersistentVolumeClaim", "af-audioflow-data")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claim["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    for deployment in (GATEWAY, PROCESSING, CONCAT):
        spec = one(rendered, "Deployment", deployment)["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["data"]["persistentVolumeClaim"]["claimName"] == "af-audioflow-data"
        for container in _containers(spec):
            assert {"name": "data", "mountPath": "/data"} in container["volumeMounts"]
            assert {"name": "AUDIOFLOW_DATA_DIR", "value": "/data"} not in container.get("env", [])
    config = one(rendered, "ConfigMap", "af-audioflow-config")
    assert config["data"]["AUDIOFLOW_DATA_DIR"] == "/data"
    existing = tools.template("--set", "persistence.existingClaim=shared-nfs")
    assert not find(existing, "PersistentVolumeClaim")
    volumes = one(existing, "Deployment", PROCESSING)["spec"]["template"]["spec"]["volumes"]
    assert volumes[0]["persistentVolumeClaim"]["claimName"] == "shared-nfs"


# ---- autoscaling contract ----------------------------------------------------------------------------


def test_workers_carry_the_autoscale_contract(rendered: list[Manifest]) -> None:
    expected = {
        PROCESSING: ("af:transcribe", "processing", "1", "4", "10"),
        CONCAT: ("af:concat", "concat", "1", "2", "50"),
    }
    for name, (stream, group, low, high, target) in expected.items():
        deployment = one(rendered, "Deployment", name)
        assert deployment["metadata"]["labels"]["audioflow.io/autoscale"] == "true"
        assert deployment["metadata"]["annotations"] == {
            "audioflow.io/stream": stream,
            "audioflow.io/group": group,
            "audioflow.io/min-replicas": low,
            "audioflow.io/max-replicas": high,
            "audioflow.io/target-backlog": target,
            "audioflow.io/scale-down-window-s": "60",
            "audioflow.io/cooldown-s": "120",
        }
        # The operator owns spec.replicas: an upgrade must not reset it.
        assert "replicas" not in deployment["spec"]
    for name in (GATEWAY, OPERATOR):
        assert "audioflow.io/autoscale" not in one(rendered, "Deployment", name)["metadata"]["labels"]


def test_autoscale_annotations_follow_values(helm: tools.Binaries) -> None:
    rendered = tools.template(
        "--set",
        "global.redisPrefix=team1:,workers.processing.autoscale.min=2,workers.processing.autoscale.max=9,"
        "workers.processing.autoscale.targetBacklog=3,workers.processing.autoscale.scaleDownWindowSeconds=30,"
        "workers.processing.autoscale.cooldownSeconds=0,workers.concat.autoscale.enabled=false,"
        "workers.concat.replicas=3",
    )
    processing = one(rendered, "Deployment", PROCESSING)["metadata"]["annotations"]
    assert processing["audioflow.io/stream"] == "team1:transcribe"
    assert processing["audioflow.io/min-replicas"] == "2"
    assert processing["audioflow.io/max-replicas"] == "9"
    assert processing["audioflow.io/target-backlog"] == "3"
    assert processing["audioflow.io/scale-down-window-s"] == "30"
    assert processing["audioflow.io/cooldown-s"] == "0"
    concat = one(rendered, "Deployment", CONCAT)
    assert "audioflow.io/autoscale" not in concat["metadata"]["labels"]
    assert "annotations" not in concat["metadata"]
    assert concat["spec"]["replicas"] == 3
    assert one(rendered, "ConfigMap", "af-audioflow-config")["data"]["AUDIOFLOW_REDIS_PREFIX"] == "team1:"


def test_the_operator_reads_every_annotation_the_chart_writes(rendered: list[Manifest]) -> None:
    """The contract from the operator's side: the keys its autoscaler parses are the ones rendered."""
    source = (ROOT / "operator/src/audioflow/operator/autoscaler.py").read_text(encoding="utf-8")
    rendered_keys = set(one(rendered, "Deployment", PROCESSING)["metadata"]["annotations"])
    suffixes = {key.removeprefix("audioflow.io/") for key in rendered_keys}
    for suffix in suffixes:
        assert f'"{suffix}"' in source, f"the operator does not read audioflow.io/{suffix}"
    assert 'AUTOSCALE_LABEL = "audioflow.io/autoscale"' in source


# ---- configuration and secrets -------------------------------------------------------------------------


def _secret_data(rendered: list[Manifest], name: str) -> dict[str, str]:
    secret = one(rendered, "Secret", name)
    return {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}


def test_generated_secrets_are_valid(rendered: list[Manifest]) -> None:
    data = _secret_data(rendered, SECRET)
    assert set(data) == {"redis-url", "database-url", "webhook-secret", "api-token", "admin-token"}
    assert len(decode_secret(data["webhook-secret"])) >= 16
    assert len(data["api-token"]) >= 32 and len(data["admin-token"]) >= 32
    assert data["admin-token"] != data["api-token"]
    again = _secret_data(tools.template(), SECRET)
    assert again["api-token"] != data["api-token"], "generated, not a constant"


def test_given_and_existing_secrets(helm: tools.Binaries) -> None:
    secret = "whsec_" + base64.b64encode(b"0123456789abcdef0123").decode()
    given = _secret_data(
        tools.template("--set", f"auth.webhookSecret={secret},auth.apiToken=0123456789abcdef0123"), SECRET
    )
    assert given["webhook-secret"] == secret and given["api-token"] == "0123456789abcdef0123"

    rendered = tools.template(
        "--set",
        "auth.existingSecret=hooks,redis.existingSecret=redis-creds,redis.existingSecretKey=url,"
        "database.existingSecret=pg-app,database.existingSecretKey=uri",
    )
    assert not find(rendered, "Secret"), "everything comes from existing Secrets"
    refs = {
        env["name"]: env["valueFrom"]["secretKeyRef"]
        for _, spec in tools.pod_specs(rendered)
        for c in _containers(spec)
        for env in c.get("env", [])
        if "secretKeyRef" in env.get("valueFrom", {})
    }
    assert refs["REDIS_URL"] == {"name": "redis-creds", "key": "url"}
    assert refs["DATABASE_URL"] == {"name": "pg-app", "key": "uri"}
    assert refs["AUDIOFLOW_WEBHOOK_SECRET"] == {"name": "hooks", "key": "webhook-secret"}
    assert refs["AUDIOFLOW_API_TOKEN"] == {"name": "hooks", "key": "api-token"}
    assert refs["AUDIOFLOW_ADMIN_TOKEN"] == {"name": "hooks", "key": "admin-token"}
    operator_env = {e["name"]: e.get("value") for e in _container(rendered, OPERATOR)["env"]}
    assert operator_env["AUDIOFLOW_WEBHOOK_SECRET_NAME"] == "hooks"


def _environment(rendered: list[Manifest], container: Manifest) -> dict[str, str]:
    """A container's environment as the kubelet would build it from the rendered objects."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(one(rendered, "ConfigMap", source["configMapRef"]["name"])["data"])
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        elif "secretKeyRef" in entry.get("valueFrom", {}):
            ref = entry["valueFrom"]["secretKeyRef"]
            env[entry["name"]] = _secret_data(rendered, ref["name"])[ref["key"]]
        elif "fieldRef" in entry.get("valueFrom", {}):
            assert entry["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
            env[entry["name"]] = NAMESPACE
    return env


def test_every_container_environment_parses_into_settings(
    rendered: list[Manifest], monkeypatch: pytest.MonkeyPatch
) -> None:
    from audioflow.core.settings import Settings

    known = {
        str(choice)
        for field in Settings.model_fields.values()
        if field.validation_alias is not None
        for choice in getattr(field.validation_alias, "choices", [field.validation_alias])
    }
    python_runtime = {"PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "HOME"}
    for name, spec in tools.pod_specs(rendered):
        for container in _containers(spec):
            env = _environment(rendered, container)
            unknown = set(env) - known - python_runtime
            assert not unknown, f"{name} {container['name']} sets unknown settings {unknown}"
            for variable in known:
                monkeypatch.delenv(variable, raising=False)
            for variable, value in env.items():
                monkeypatch.setenv(variable, value)
            settings = Settings()
            assert settings.log_format == "json"
            assert settings.redis_url == "redis://redis:6379/0"
            if container["name"] in {"gateway", "migrate", "processing", "concat"}:
                assert settings.database_url == "postgresql+psycopg://audioflow@postgresql:5432/audioflow"
            if container["name"] == "gateway":
                assert settings.webhook_secret and settings.api_token and settings.admin_token
            if container["name"] in {"processing", "concat", "operator"}:
                assert settings.metrics_port == 9100
            if container["name"] == "operator":
                assert settings.gateway_url == f"http://{GATEWAY}.{NAMESPACE}.svc:8080"
                assert settings.namespace == NAMESPACE
                # It creates, ends and deletes meetings: the admin token, and not the read token it needs not.
                assert settings.admin_token and settings.api_token is None
                assert settings.simulator_image == "audioflow-workers:0.1.0"
                assert settings.webhook_secret_name == SECRET


def test_pods_roll_when_configuration_changes(rendered: list[Manifest]) -> None:
    def checksums(manifests: list[Manifest]) -> str:
        annotations = one(manifests, "Deployment", PROCESSING)["spec"]["template"]["metadata"]["annotations"]
        return str(annotations["checksum/config"])

    assert checksums(rendered) != checksums(tools.template("--set", "global.logLevel=DEBUG"))


def test_checksum_annotations_are_quoted_so_a_digits_only_hash_stays_a_string() -> None:
    # A 16-hex-digit hash is all digits about once in 2,000 renders of the random Secret; unquoted, YAML
    # reads it as a number and the API server refuses the Deployment ("cannot unmarshal number").
    lines = [
        line.strip() for line in tools.template_text().splitlines() if line.strip().startswith("checksum/")
    ]
    assert lines, "no checksum annotations rendered"
    for line in lines:
        assert re.fullmatch(r'checksum/\w+: "[0-9a-f]+"', line), line


# ---- CRD ----------------------------------------------------------------------------------------------


def test_chart_crd_is_the_repository_crd() -> None:
    source = ROOT / "crds" / "meeting.yaml"
    copy = CHART / "files" / "crds" / "meeting.yaml"
    assert copy.read_bytes() == source.read_bytes(), f"copy {source} to {copy}"


def test_rendered_crd_equals_the_repository_crd(rendered: list[Manifest]) -> None:
    crd = one(rendered, "CustomResourceDefinition", "meetings.audioflow.io")
    source = tools.load_yaml((ROOT / "crds" / "meeting.yaml").read_text(encoding="utf-8"))
    assert crd["spec"] == source["spec"]
    assert crd["metadata"]["labels"].items() >= source["metadata"]["labels"].items()
    assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    dropped = tools.template("--set", "crds.keep=false")
    assert "annotations" not in one(dropped, "CustomResourceDefinition", "meetings.audioflow.io")["metadata"]
    assert not find(tools.template("--set", "crds.install=false"), "CustomResourceDefinition")


# ---- monitoring ----------------------------------------------------------------------------------------


def test_service_monitor_only_with_the_prometheus_operator_api(rendered: list[Manifest]) -> None:
    assert not find(rendered, "ServiceMonitor")
    with_api = tools.template("--api-versions", "monitoring.coreos.com/v1")
    monitor = one(with_api, "ServiceMonitor", "af-audioflow")
    selector = monitor["spec"]["selector"]["matchLabels"]
    selected = [s for s in find(with_api, "Service") if selector.items() <= s["metadata"]["labels"].items()]
    assert {s["metadata"]["name"] for s in selected} == {GATEWAY, PROCESSING, CONCAT, OPERATOR}
    ports = {p["name"] for s in selected for p in s["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= ports
    assert all(e["path"] == "/metrics" for e in monitor["spec"]["endpoints"])
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    disabled = tools.template(
        "--api-versions", "monitoring.coreos.com/v1", "--set", "serviceMonitor.enabled=false"
    )
    assert not find(disabled, "ServiceMonitor")
    # /metrics on a port of its own: the gateway's Service has it and the http port is no longer scraped.
    apart = tools.template("--api-versions", "monitoring.coreos.com/v1", "--set", "gateway.metrics.port=9102")
    endpoints = one(apart, "ServiceMonitor", "af-audioflow")["spec"]["endpoints"]
    assert [e["port"] for e in endpoints] == ["metrics"]
    gateway_ports = {p["name"]: p["port"] for p in one(apart, "Service", GATEWAY)["spec"]["ports"]}
    assert gateway_ports == {"http": 8080, "metrics": 9102}
    env = {e["name"]: e.get("value") for e in _container(apart, GATEWAY)["env"]}
    assert env["AUDIOFLOW_METRICS_PORT"] == "9102"
    labelled = tools.template(
        "--api-versions", "monitoring.coreos.com/v1", "--set", "serviceMonitor.additionalLabels.release=kps"
    )
    assert one(labelled, "ServiceMonitor", "af-audioflow")["metadata"]["labels"]["release"] == "kps"


def test_dashboards_are_configmaps_for_the_grafana_sidecar(rendered: list[Manifest]) -> None:
    maps = [m for m in find(rendered, "ConfigMap") if m["metadata"]["labels"].get("grafana_dashboard") == "1"]
    assert sorted(m["metadata"]["name"] for m in maps) == [
        "af-audioflow-dashboard-operator",
        "af-audioflow-dashboard-pipeline",
    ]
    files = {p.name: p.read_text(encoding="utf-8") for p in (CHART / "dashboards").glob("*.json")}
    for m in maps:
        ((key, text),) = m["data"].items()
        assert text == files[key].rstrip("\n"), "the ConfigMap holds the file as is"
    assert not [
        m
        for m in find(tools.template("--set", "dashboards.enabled=false"), "ConfigMap")
        if "dashboard" in m["metadata"]["name"]
    ]


# ---- NOTES.txt -----------------------------------------------------------------------------------------


def _notes(tmp_path: Path, *args: str) -> str:
    """NOTES.txt as helm renders it (helm template skips it: render it through a scratch template)."""
    chart = tmp_path / "audioflow"
    shutil.copytree(CHART, chart)
    (chart / "templates" / "zz-notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\n"
        'data:\n  notes: {{ include (print .Template.BasePath "/NOTES.txt") . | quote }}\n',
        encoding="utf-8",
    )
    manifests = tools.template(*args, chart=chart)
    return str(one(manifests, "ConfigMap", "notes")["data"]["notes"])


def test_notes_tell_the_user_what_to_do_next(tmp_path: Path) -> None:
    notes = _notes(tmp_path)
    assert f"port-forward svc/{GATEWAY} 8080:8080" in notes
    assert f"get secret {SECRET} -o jsonpath='{{.data.api-token}}'" in notes
    assert "examples/meeting.yaml" in notes and "get meetings" in notes
    assert "grafana_dashboard=1" in notes
    assert "No ServiceMonitor" in notes
    disabled = _notes(tmp_path / "b", "--set", "operator.enabled=false,persistence.enabled=false")
    assert "operator is disabled" in disabled and "WARNING" in disabled


# ---- values.yaml and the schema agree ----------------------------------------------------------------


def _leaves(data: Any, prefix: str = "") -> set[str]:
    if isinstance(data, dict) and data:
        return set().union(*(_leaves(value, f"{prefix}{key}.") for key, value in data.items()))
    return {prefix.rstrip(".")}


def test_values_yaml_is_valid_against_its_own_schema() -> None:
    values = tools.load_yaml((CHART / "values.yaml").read_text(encoding="utf-8"))
    schema = tools.read_json(CHART / "values.schema.json")
    assert tools.schema_errors(schema, values) == []
    assert next(iter(values)) == "global"
    for block in (
        "gateway",
        "workers",
        "operator",
        "redis",
        "database",
        "persistence",
        "serviceMonitor",
        "dashboards",
        "crds",
    ):
        assert block in values


def test_cors_origins_reach_the_gateway_and_bad_ones_are_refused(helm: tools.Binaries) -> None:
    from audioflow.core.settings import Settings

    rendered = tools.template("--set", "gateway.corsOrigins={https://meet.example,http://localhost:5173}")
    [gateway] = [
        c for _, spec in tools.pod_specs(rendered) for c in _containers(spec) if c["name"] == "gateway"
    ]
    raw = _environment(rendered, gateway)["AUDIOFLOW_CORS_ORIGINS"]
    assert Settings(AUDIOFLOW_CORS_ORIGINS=raw).cors_origins == (
        "https://meet.example",
        "http://localhost:5173",
    )
    default_gateway = tools.template()
    assert "AUDIOFLOW_CORS_ORIGINS" not in tools.dump_yaml(default_gateway)
    refused = tools.run_helm(
        "template", "af", str(tools.CHART), "--set", "gateway.corsOrigins={meet.example/path}", check=False
    )
    assert refused.returncode != 0 and "corsOrigins" in refused.stderr
