"""Fixtures for the tests that a real API server judges: one control plane (etcd, kube-apiserver,
kube-controller-manager; see ``controlplane.py``) for the session, a namespace of each test's own."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import pytest

from tests.kube import controlplane
from tests.kube.controlplane import ControlPlane
from tests.services import eventually


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with controlplane.running(tmp_path_factory.mktemp("controlplane")) as plane:
        yield plane
        plane.check_alive()  # a component that died mid-session fails the last test's teardown


@contextlib.contextmanager
def fresh_namespace(plane: ControlPlane) -> Iterator[str]:
    """A namespace of the caller's own, once the controller manager gave it its ``default``
    ServiceAccount (it does so a moment after the namespace is made, as in any cluster; a token asked for
    before that is refused: CI failed on it once); deleted afterwards without waiting."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    plane.kubectl("create", "namespace", name)
    eventually(
        f"namespace {name}'s default ServiceAccount", lambda: plane.get("serviceaccount", "default", name), 30
    )
    try:
        yield name
    finally:
        plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def namespace(control_plane: ControlPlane) -> Iterator[str]:
    """A fresh namespace for one test."""
    with fresh_namespace(control_plane) as name:
        yield name
