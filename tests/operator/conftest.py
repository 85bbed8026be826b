"""The operator against kmock's Kubernetes emulator (real kopf, in-process), real Redis and, where
needed, a real gateway process.

kmock's emulator keeps objects in memory and streams watch events, but only for the resources it
is told about: the Meeting CRD's resource, plus the CRD and namespace resources (without them kopf
spawns no watchers), plus what the operator touches (Deployments with their scale subresource, Jobs,
Secrets, Events). It merges patches as plain dicts and never bumps ``resourceVersion``, so kopf may
run a handler twice: the tests assert outcomes, never how often a handler ran.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import services
from tests.integration.stack import Stack, make_stack
from tests.operator.harness import declare_resources, kubeconfig


@pytest.fixture
def emulator(kmock: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_env: None) -> Any:
    """kmock's KubernetesEmulator, declared as a cluster with the Meeting CRD installed, and a
    kubeconfig pointing at it (the operator and kopf log in through ``KUBECONFIG``)."""
    declare_resources(kmock)
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(kubeconfig(kmock)))  # JSON is YAML
    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    return kmock


@pytest.fixture(scope="module")
def gateway(redis_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One real gateway (SQLite, real Redis) shared by a test module; each test uses its own meetings."""
    workdir = tmp_path_factory.mktemp("gateway")
    prefix = services.redis_prefix()
    stack = make_stack(workdir, redis_server_url, f"sqlite:///{workdir}/db.sqlite", prefix)
    stack.start_api()
    try:
        yield stack
    finally:
        stack.stop()
        services.delete_prefix(redis_server_url, prefix)
