"""The chart's operator RBAC as the real API server enforces it: what the operator's ServiceAccount may
do (every call the operator makes), and what it may not (other Secrets, other Deployments' scale,
anything outside its namespace). The negatives are also tried for real with the account's own token."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.kube.conftest import fresh_namespace
from tests.kube.controlplane import ControlPlane
from tests.kube.operator_process import OperatorIdentity, apply_crd, install_identity, render_chart

ALLOWED = [
    ("watch", "meetings.audioflow.io", ""),
    ("patch", "meetings.audioflow.io", ""),
    ("delete", "meetings.audioflow.io", ""),
    ("patch", "meetings.audioflow.io", "status"),
    ("update", "meetings.audioflow.io", "finalizers"),
    ("create", "jobs.batch", ""),
    ("delete", "jobs.batch", ""),
    ("create", "events", ""),
    ("get", "secrets/af-audioflow", ""),
    ("list", "deployments.apps", ""),
    ("patch", "deployments.apps/af-audioflow-processing", "scale"),
    ("patch", "deployments.apps/af-audioflow-concat", "scale"),
]
DENIED = [
    ("get", "secrets/other", ""),
    ("list", "secrets", ""),
    ("patch", "deployments.apps/not-the-charts", "scale"),
    ("patch", "deployments.apps/af-audioflow-processing", ""),
    ("delete", "deployments.apps", ""),
    ("create", "pods", ""),
    ("create", "rolebindings.rbac.authorization.k8s.io", ""),
]


@pytest.fixture(scope="module")
def operator_identity(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorIdentity]:
    """The chart's operator identity in a namespace shared by this module's tests."""
    apply_crd(control_plane)
    with fresh_namespace(control_plane) as namespace:
        yield install_identity(control_plane, namespace, tmp_path_factory.mktemp("rbac"))


CASES = [(*case, True) for case in ALLOWED] + [(*case, False) for case in DENIED]


@pytest.mark.parametrize(
    ("verb", "resource", "subresource", "allowed"),
    CASES,
    ids=[
        f"{'may' if ok else 'may-not'}-{verb}-{res}{'/' + sub if sub else ''}" for verb, res, sub, ok in CASES
    ],
)
def test_operator_rbac(
    control_plane: ControlPlane,
    operator_identity: OperatorIdentity,
    verb: str,
    resource: str,
    subresource: str,
    allowed: bool,
) -> None:
    user, namespace = operator_identity.user, operator_identity.namespace
    assert control_plane.can_i(verb, resource, namespace, user, subresource) is allowed


def test_operator_may_not_touch_another_namespace(
    control_plane: ControlPlane, operator_identity: OperatorIdentity
) -> None:
    assert not control_plane.can_i("list", "meetings.audioflow.io", "default", operator_identity.user)
    assert not control_plane.can_i("create", "jobs.batch", "default", operator_identity.user)


def test_denials_hold_with_the_accounts_own_token(
    control_plane: ControlPlane, operator_identity: OperatorIdentity
) -> None:
    """Not only ``can-i``: requests made with the TokenRequest token are refused with 403."""
    namespace = operator_identity.namespace
    workers = render_chart(namespace, "templates/worker-processing/deployment.yaml")
    intruder = {**workers[0], "metadata": {**workers[0]["metadata"], "name": "not-the-charts"}}
    control_plane.apply(workers[0], intruder, namespace=namespace)
    control_plane.kubectl(
        "create", "secret", "generic", "other", "--namespace", namespace, "--from-literal=k=v"
    )
    as_operator = operator_identity.kubeconfig

    def refused(*args: str) -> str:
        result = control_plane.kubectl(*args, "--namespace", namespace, kubeconfig=as_operator, check=False)
        assert result.returncode != 0, f"kubectl {' '.join(args)} was allowed"
        return result.stderr

    assert "forbidden" in refused("get", "secret", "other")
    assert "forbidden" in refused("scale", "deployment", "not-the-charts", "--replicas=3")
    assert "forbidden" in refused("delete", "deployment", workers[0]["metadata"]["name"])
    allowed = control_plane.kubectl(
        "scale", "deployment", workers[0]["metadata"]["name"], "--replicas=2", "--namespace", namespace,
        kubeconfig=as_operator,
    )  # fmt: skip
    assert "scaled" in allowed.stdout
    assert (
        control_plane.kubectl(
            "get", "secret", "af-audioflow", "--namespace", namespace, kubeconfig=as_operator, check=False
        ).stderr.count("forbidden")
        == 0
    )  # allowed by name (it does not exist here: NotFound, not Forbidden)
