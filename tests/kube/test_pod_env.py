"""The container environment resolver (``tests/kube/pod_env.py``) that the kubelet stand-in and the image
tests share. Its lookups here are test doubles (dicts); the real API server's Secrets feed it in
``test_chart.py`` and ``test_operator.py``."""

from __future__ import annotations

from typing import Any

import pytest

from tests.kube.pod_env import Lookups, MissingSource, container_args, container_env, quantity

POD: dict[str, Any] = {
    "metadata": {
        "name": "op-7d9f-abcde",
        "namespace": "meetings",
        "uid": "0b5c",
        "labels": {"app.kubernetes.io/name": "audioflow"},
        "annotations": {"checksum/config": "abc123"},
    },
    "spec": {"serviceAccountName": "af-operator"},
    "status": {"podIP": "10.0.0.7"},
}
LOOKUPS = Lookups(
    secret={"auth": {"admin-token": "s3cret", "api-token": "t0ken"}}.get,
    config_map={"config": {"AUDIOFLOW_LOG_LEVEL": "INFO", "REDIS_URL": "from-config"}}.get,
)


def env_of(
    container: dict[str, Any], pod: dict[str, Any] = POD, lookups: Lookups = LOOKUPS
) -> dict[str, str]:
    return container_env({"name": "c", **container}, pod, lookups)


def test_sources_in_kubernetes_order_later_names_win() -> None:
    env = env_of(
        {
            "envFrom": [
                {"configMapRef": {"name": "config"}},
                {"secretRef": {"name": "auth"}, "prefix": "AUTH_"},
            ],
            "env": [
                {"name": "REDIS_URL", "value": "from-env"},
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "auth", "key": "admin-token"}}},
                {
                    "name": "LEVEL",
                    "valueFrom": {"configMapKeyRef": {"name": "config", "key": "AUDIOFLOW_LOG_LEVEL"}},
                },
            ],
        }
    )
    assert env == {
        "AUDIOFLOW_LOG_LEVEL": "INFO",
        "REDIS_URL": "from-env",
        "AUTH_admin-token": "s3cret",
        "AUTH_api-token": "t0ken",
        "TOKEN": "s3cret",
        "LEVEL": "INFO",
    }


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("metadata.name", "op-7d9f-abcde"),
        ("metadata.namespace", "meetings"),
        ("metadata.uid", "0b5c"),
        ("metadata.labels['app.kubernetes.io/name']", "audioflow"),
        ("metadata.annotations['checksum/config']", "abc123"),
        ("metadata.labels['absent']", ""),
        ("spec.serviceAccountName", "af-operator"),
        ("spec.nodeName", ""),  # not scheduled: no node
        ("status.podIP", "10.0.0.7"),
    ],
)
def test_field_refs_read_the_pod(path: str, expected: str) -> None:
    assert env_of({"env": [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": path}}}]}) == {"X": expected}


def test_resource_field_refs_divide_and_round_up() -> None:
    resources = {"limits": {"cpu": "1500m", "memory": "256Mi"}, "requests": {"cpu": "250m"}}
    env = env_of(
        {
            "resources": resources,
            "env": [
                {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
                {
                    "name": "MEM_MI",
                    "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
                },
                {
                    "name": "REQ_M",
                    "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}},
                },
            ],
        }
    )
    assert env == {"CPU": "2", "MEM_MI": "256", "REQ_M": "250"}


def test_a_limit_the_container_does_not_set_fails_instead_of_inventing_a_node() -> None:
    with pytest.raises(MissingSource, match=r"limits\.memory"):
        env_of({"env": [{"name": "M", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory"}}}]})


def test_values_expand_earlier_names_only() -> None:
    env = env_of(
        {
            "env": [
                {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "URL", "value": "http://gw.$(NS).svc:$(PORT)/$$(NS)"},
                {"name": "PORT", "value": "8080"},
            ]
        }
    )
    assert env["URL"] == "http://gw.meetings.svc:$(PORT)/$(NS)"


def test_args_expand_any_name_of_the_environment() -> None:
    container = {
        "env": [
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "PORT", "value": "8080"},
        ],
        "args": ["api", "--port", "$(PORT)", "--url=http://gw.$(NS).svc", "$$(PORT)", "$(UNSET)", 7],
    }
    env = env_of(container)
    assert container_args(container, env) == [
        "api", "--port", "8080", "--url=http://gw.meetings.svc", "$(PORT)", "$(UNSET)", "7",
    ]  # fmt: skip
    assert container_args({"name": "c"}, env) == []


@pytest.mark.parametrize(
    "item",
    [
        {"valueFrom": {"secretKeyRef": {"name": "gone", "key": "k"}}},
        {"valueFrom": {"secretKeyRef": {"name": "auth", "key": "absent"}}},
        {"valueFrom": {"configMapKeyRef": {"name": "gone", "key": "k"}}},
    ],
)
def test_a_missing_required_source_fails_as_the_pod_would(item: dict[str, Any]) -> None:
    with pytest.raises(MissingSource):
        env_of({"env": [{"name": "X", **item}]})


def test_optional_sources_may_be_missing() -> None:
    env = env_of(
        {
            "envFrom": [{"secretRef": {"name": "gone", "optional": True}}],
            "env": [
                {"name": "A", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k", "optional": True}}},
                {
                    "name": "B",
                    "valueFrom": {"configMapKeyRef": {"name": "config", "key": "no", "optional": True}},
                },
            ],
        }
    )
    assert env == {}


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValueError, match="downward API"):
        env_of({"env": [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.hostname"}}}]})


def test_quantities() -> None:
    assert quantity("500m") * 2 == 1
    assert quantity("1Gi") == 1024 * quantity("1Mi")
    assert quantity("2k") == 2000
    with pytest.raises(ValueError):
        quantity("1Qi")
