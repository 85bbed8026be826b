"""skaffold.yaml and the kind end-to-end workflow, checked by reading (no Docker engine, no cluster here)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from tests.chart import tools
from tests.chart.tools import CHART, ROOT, Manifest, find, one

SKAFFOLD_SCHEMA = tools.HERE / "schemas" / "skaffold-v4beta14.json"
WORKFLOW = ROOT / ".github" / "workflows" / "kind-e2e.yaml"
KIND = ROOT / ".github" / "kind"
IMAGE_VALUES = {
    "audioflow-api": ["gateway.image"],
    "audioflow-workers": ["workers.processing.image", "workers.concat.image"],
    "audioflow-operator": ["operator.image"],
}


def _skaffold() -> dict[str, Any]:
    data: dict[str, Any] = tools.load_yaml((ROOT / "skaffold.yaml").read_text(encoding="utf-8"))
    return data


def _workflow() -> dict[Any, Any]:
    data: dict[Any, Any] = tools.load_yaml(WORKFLOW.read_text(encoding="utf-8"))
    return data


def _values_has(path: str) -> bool:
    node: Any = tools.load_yaml((CHART / "values.yaml").read_text(encoding="utf-8"))
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


# ---- skaffold ----------------------------------------------------------------------------------------


def test_skaffold_uses_the_current_schema_and_validates() -> None:
    config = _skaffold()
    assert config["apiVersion"] == "skaffold/v4beta14", "the newest config version (Skaffold v2.19)"
    assert config["kind"] == "Config"
    assert tools.schema_errors(tools.read_json(SKAFFOLD_SCHEMA), config) == []


def test_skaffold_builds_the_three_images_from_their_dockerfiles() -> None:
    artifacts = _skaffold()["build"]["artifacts"]
    assert {a["image"] for a in artifacts} == set(IMAGE_VALUES)
    for artifact in artifacts:
        member = artifact["image"].removeprefix("audioflow-")
        assert artifact["context"] == "."
        assert artifact["docker"]["dockerfile"] == f"{member}/Dockerfile"
        assert (ROOT / artifact["context"] / artifact["docker"]["dockerfile"]).is_file()


def test_skaffold_deploys_the_chart_with_the_built_images() -> None:
    (release,) = _skaffold()["deploy"]["helm"]["releases"]
    assert (ROOT / release["chartPath"] / "Chart.yaml").is_file()
    for values_file in release.get("valuesFiles", []):
        assert (ROOT / values_file).is_file()
    templates: dict[str, str] = release["setValueTemplates"]
    expected = {}
    for image, keys in IMAGE_VALUES.items():
        sanitized = re.sub(r"[/.:-]", "_", image)
        for key in keys:
            expected[f"{key}.repository"] = f"{{{{.IMAGE_REPO_{sanitized}}}}}"
            expected[f"{key}.tag"] = f"{{{{.IMAGE_TAG_{sanitized}}}}}"
    assert templates == expected
    for key in templates:
        assert _values_has(key), f"{key} is not a chart value"


def test_skaffold_values_render(helm: tools.Binaries) -> None:
    (release,) = _skaffold()["deploy"]["helm"]["releases"]
    sets = [
        f"{key}={value.replace('{{.IMAGE_REPO_', 'repo_').replace('{{.IMAGE_TAG_', 'tag_').rstrip('}')}"
        for key, value in release["setValueTemplates"].items()
    ]
    args = [arg for f in release["valuesFiles"] for arg in ("-f", str(ROOT / f))]
    rendered = tools.template(
        *args, "--set", ",".join(sets), release=release["name"], namespace=release["namespace"]
    )
    gateway = one(rendered, "Deployment", "audioflow-gateway")
    assert (
        gateway["spec"]["template"]["spec"]["containers"][0]["image"]
        == "repo_audioflow_api:tag_audioflow_api"
    )
    (forward,) = _skaffold()["portForward"]
    assert find(rendered, "Service", forward["resourceName"])


# ---- the kind workflow ---------------------------------------------------------------------------------


def _steps() -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = _workflow()["jobs"]["e2e"]["steps"]
    return steps


def _step(name_part: str) -> dict[str, Any]:
    (step,) = [s for s in _steps() if name_part.lower() in s.get("name", "").lower()]
    return step


def _commands(step: dict[str, Any]) -> list[list[str]]:
    """The shell commands of a run step, continuations joined, as words."""
    text = step["run"].replace("\\\n", " ")
    commands = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            commands.append(shlex.split(line, comments=True))
    return commands


def test_workflow_is_well_formed() -> None:
    workflow = _workflow()
    assert workflow["name"] == "kind-e2e"
    triggers = workflow.get(True, workflow.get("on"))  # YAML 1.1 reads the key "on" as true
    assert isinstance(triggers, dict)
    assert "workflow_dispatch" in triggers and "pull_request" in triggers
    assert workflow["permissions"] == {"contents": "read"}
    job = workflow["jobs"]["e2e"]
    assert job["timeout-minutes"] <= 60
    for step in job["steps"]:
        assert "name" in step
        assert ("uses" in step) != ("run" in step), step["name"]
        if "uses" in step:
            action, _, ref = step["uses"].partition("@")
            assert ref and ref not in {"main", "master", "latest"}, f"pin {action}"
    uses = {s["uses"].split("@")[0]: s for s in job["steps"] if "uses" in s}
    assert {"actions/checkout", "helm/kind-action", "azure/setup-helm"} <= set(uses)
    assert re.fullmatch(r"v3\.\d+\.\d+", uses["azure/setup-helm"]["with"]["version"]), "Helm 3, pinned"
    assert re.fullmatch(r"v0\.\d+\.\d+", uses["helm/kind-action"]["with"]["version"]), "kind, pinned"


def test_workflow_builds_loads_and_installs_the_same_images() -> None:
    env = _workflow()["env"]
    tag = "${TAG}"
    built = {}
    for words in _commands(_step("build the images")):
        if words[:2] == ["docker", "build"]:
            built[words[words.index("-t") + 1]] = words[words.index("-f") + 1]
            assert words[-1] == ".", "the repository root is the build context"
    assert built == {
        f"{image}:{tag}": f"{image.removeprefix('audioflow-')}/Dockerfile" for image in IMAGE_VALUES
    }
    load = _step("load the images")["run"]
    assert 'kind load docker-image "audioflow-${image}:${TAG}" --name "${CLUSTER}"' in load
    assert "for image in api workers operator" in load
    (install,) = [w for w in _commands(_step("install the chart")) if w[:2] == ["helm", "install"]]
    sets = {
        w.split("=", 1)[0]: w.split("=", 1)[1] for i, w in enumerate(install) if install[i - 1] == "--set"
    }
    assert sets == {f"{key}.tag": tag for keys in IMAGE_VALUES.values() for key in keys}
    assert "charts/audioflow" in install and "--wait" in install
    assert install[install.index("--values") + 1] == ".github/kind/values.yaml"
    assert env["TAG"] == "ci-${{ github.sha }}"


def test_workflow_waits_for_the_example_meeting_to_complete() -> None:
    env = _workflow()["env"]
    example = tools.load_yaml((ROOT / "examples" / "meeting.yaml").read_text(encoding="utf-8"))
    assert example["kind"] == "Meeting" and example["spec"]["simulate"]["enabled"] is True
    assert env["MEETING"] == example["metadata"]["name"]
    commands = _commands(_step("apply the example meeting"))
    assert ["kubectl", "-n", "${NAMESPACE}", "apply", "-f", "examples/meeting.yaml"] in commands
    (wait,) = [w for w in commands if w[3:4] == ["wait"]]
    condition = next(w for w in wait if w.startswith("--for=jsonpath="))
    match = re.fullmatch(r"--for=jsonpath=\{\.status\.phase\}=(\w+)", condition)
    assert match, condition
    crd = tools.load_yaml((ROOT / "crds" / "meeting.yaml").read_text(encoding="utf-8"))
    (version,) = crd["spec"]["versions"]
    phases = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["phase"]["enum"]
    assert match.group(1) in phases, f"the CRD's phases are {phases}"
    assert match.group(1) == "Completed"
    assert "meeting/${MEETING}" in wait and any(w.startswith("--timeout=") for w in wait)


def test_workflow_dumps_logs_on_failure() -> None:
    (dump,) = [s for s in _steps() if s.get("if") == "failure()"]
    run = dump["run"]
    for needle in ("get all,meetings", "describe pods", "logs", "--previous", "get jobs", "helm -n"):
        assert needle in run
    for deployment in ("gateway", "processing", "concat", "operator"):
        assert deployment in run


def test_workflow_names_match_the_chart(helm: tools.Binaries) -> None:
    """Names the workflow uses (Service, Secret, Deployments) are the ones the chart renders."""
    env = _workflow()["env"]
    rendered = tools.template(
        "-f", str(KIND / "values.yaml"), release=env["RELEASE"], namespace=env["NAMESPACE"]
    )
    check = _step("check the recording")["run"]
    assert 'svc/${RELEASE}-gateway" 8080:8080' in check
    assert find(rendered, "Service", f"{env['RELEASE']}-gateway")
    secret = one(rendered, "Secret", env["RELEASE"])
    assert "api-token" in secret["data"]
    for deployment in ("gateway", "processing", "concat", "operator"):
        assert find(rendered, "Deployment", f"{env['RELEASE']}-{deployment}")


# ---- .github/kind: Redis, PostgreSQL and the values for a one-node cluster -------------------------------


def _kind_manifests() -> list[Manifest]:
    return [
        doc
        for path in sorted(KIND.glob("*.yaml"))
        if path.name != "values.yaml"
        for doc in tools.load_yaml_all(path.read_text(encoding="utf-8"))
    ]


def test_kind_services_match_the_urls(helm: tools.Binaries) -> None:
    values = tools.load_yaml((KIND / "values.yaml").read_text(encoding="utf-8"))
    services = {m["metadata"]["name"]: m for m in _kind_manifests() if m["kind"] == "Service"}
    for url in (values["redis"]["url"], values["database"]["url"]):
        host, port = re.fullmatch(r"\w+://(?:[^@]*@)?([\w.-]+):(\d+)/\w+", url).groups()  # type: ignore[union-attr]
        assert int(port) in [p["port"] for p in services[host]["spec"]["ports"]]
    images = [
        c["image"]
        for m in _kind_manifests()
        if m["kind"] == "Deployment"
        for c in m["spec"]["template"]["spec"]["containers"]
    ]
    assert images == ["postgres:16", "redis:7"]
    secret = next(m for m in _kind_manifests() if m["kind"] == "Secret")
    user, password, database = (
        secret["stringData"][k] for k in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB")
    )
    assert values["database"]["url"] == f"postgresql://{user}:{password}@postgresql:5432/{database}"
    # One node: ReadWriteOnce is what kind's local-path provisioner offers.
    assert values["persistence"]["accessModes"] == ["ReadWriteOnce"]


@pytest.mark.parametrize("version", ["1.30.0", "newest"])
def test_kind_manifests_validate(tmp_path: Path, version: str) -> None:
    version = tools.kubernetes_versions()[-1] if version == "newest" else version
    for path in sorted(KIND.glob("*.yaml")):
        if path.name == "values.yaml":
            continue
        result = tools.kubernetes_validate(path, version)
        assert result.returncode == 0, f"{path.name}: {result.stdout}{result.stderr}"
    rendered = tools.template_text("-f", str(KIND / "values.yaml"))
    out = tmp_path / "kind.yaml"
    out.write_text(rendered, encoding="utf-8")
    result = tools.kubernetes_validate(out, version)
    assert result.returncode == 0, result.stdout + result.stderr
