"""A container's environment, built as the kubelet builds it: one resolver for every test that starts a
Pod's container as a local process (``kubelet.NodelessKubelet``, ``test_images``).

The order is Kubernetes': ``envFrom`` sources first (each key with the source's ``prefix``), then
``env`` in order, later names replacing earlier ones; ``$(NAME)`` in an ``env`` value refers to a name
defined before it, and in the container's ``args`` to any name of its environment (``$$`` escapes a
``$``; a reference to an undefined name stays as written). Where the values come from is the caller's
(``Lookups``): the real API server for the kubelet stand-in, the rendered chart for the image tests. A
missing Secret, ConfigMap or key fails loudly unless its reference is ``optional``, as a Pod then fails
to start (``CreateContainerConfigError``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

# A source's data by name (the decoded values of a Secret's ``data``; a ConfigMap's ``data``), or None.
Source = Callable[[str], Mapping[str, str] | None]


@dataclass(frozen=True)
class Lookups:
    secret: Source
    config_map: Source


class MissingSource(LookupError):
    """A required Secret, ConfigMap or key is absent: the kubelet would not start the container."""


def container_env(container: Mapping[str, Any], pod: Mapping[str, Any], lookups: Lookups) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            data = _source(lookups.config_map, "ConfigMap", source["configMapRef"])
        elif "secretRef" in source:
            data = _source(lookups.secret, "Secret", source["secretRef"])
        else:
            raise ValueError(f"envFrom {source}: neither a configMapRef nor a secretRef")
        env.update({prefix + key: value for key, value in (data or {}).items()})
    for item in container.get("env") or []:
        name = item["name"]
        if "valueFrom" not in item:
            env[name] = _expand(str(item.get("value", "")), env)
            continue
        value = _value_from(item["valueFrom"], container, pod, lookups, name)
        if value is not None:
            env[name] = value
    return env


def container_args(container: Mapping[str, Any], env: Mapping[str, str]) -> list[str]:
    """The container's ``args`` as the kubelet passes them, ``$(NAME)`` expanded from ``env`` (its
    environment, from :func:`container_env`)."""
    return [_expand(str(arg), env) for arg in container.get("args") or []]


def _source(lookup: Source, kind: str, ref: Mapping[str, Any]) -> Mapping[str, str] | None:
    data = lookup(ref["name"])
    if data is None and not ref.get("optional", False):
        raise MissingSource(f"{kind} {ref['name']} is missing")
    return data


def _key(lookup: Source, kind: str, ref: Mapping[str, Any]) -> str | None:
    data = _source(lookup, kind, ref)
    if data is not None and ref["key"] in data:
        return data[ref["key"]]
    if ref.get("optional", False):
        return None
    raise MissingSource(f"{kind} {ref['name']} has no key {ref['key']}")


def _value_from(
    source: Mapping[str, Any],
    container: Mapping[str, Any],
    pod: Mapping[str, Any],
    lookups: Lookups,
    name: str,
) -> str | None:
    if "secretKeyRef" in source:
        return _key(lookups.secret, "Secret", source["secretKeyRef"])
    if "configMapKeyRef" in source:
        return _key(lookups.config_map, "ConfigMap", source["configMapKeyRef"])
    if "fieldRef" in source:
        return pod_field(pod, source["fieldRef"]["fieldPath"])
    if "resourceFieldRef" in source:
        return resource_field(container, source["resourceFieldRef"])
    raise ValueError(f"env {name}: valueFrom {source} names no source")


_LABEL_OR_ANNOTATION = re.compile(r"metadata\.(labels|annotations)\['([^']+)'\]")
_POD_FIELDS: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "metadata.name": lambda pod: pod["metadata"].get("name"),
    "metadata.namespace": lambda pod: pod["metadata"].get("namespace"),
    "metadata.uid": lambda pod: pod["metadata"].get("uid"),
    "spec.nodeName": lambda pod: pod["spec"].get("nodeName"),
    "spec.serviceAccountName": lambda pod: pod["spec"].get("serviceAccountName"),
    "status.hostIP": lambda pod: (pod.get("status") or {}).get("hostIP"),
    "status.podIP": lambda pod: (pod.get("status") or {}).get("podIP"),
}


def pod_field(pod: Mapping[str, Any], path: str) -> str:
    """A ``fieldRef``'s value: the downward API's fields of the Pod (an unset one is empty, as a Pod
    not yet scheduled has no node)."""
    if found := _LABEL_OR_ANNOTATION.fullmatch(path):
        return str((pod["metadata"].get(found.group(1)) or {}).get(found.group(2), ""))
    if path not in _POD_FIELDS:
        raise ValueError(f"fieldRef {path}: not a field the downward API offers")
    value = _POD_FIELDS[path](pod)
    return "" if value is None else str(value)


_QUANTITY = re.compile(r"([0-9.]+)([a-zA-Z]*)")
_SUFFIXES = {
    "": Decimal(1), "m": Decimal("0.001"),
    "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9, "T": Decimal(10) ** 12,
    "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30, "Ti": Decimal(2) ** 40,
}  # fmt: skip


def quantity(text: str) -> Decimal:
    """A Kubernetes quantity (``500m``, ``256Mi``, ``2``) as a number."""
    found = _QUANTITY.fullmatch(str(text))
    if found is None or found.group(2) not in _SUFFIXES:
        raise ValueError(f"{text!r} is not a quantity this resolver reads")
    return Decimal(found.group(1)) * _SUFFIXES[found.group(2)]


def resource_field(container: Mapping[str, Any], ref: Mapping[str, Any]) -> str:
    """A ``resourceFieldRef``'s value: the container's request or limit over ``divisor``, rounded up to
    a whole number as the kubelet does. A limit the container does not set would be the node's
    allocatable amount; there is no node here, so that fails instead of guessing one."""
    if ref.get("containerName", container["name"]) != container["name"]:
        raise ValueError(f"resourceFieldRef of another container ({ref['containerName']}): not resolved here")
    kind, _, resource = ref["resource"].partition(".")
    if kind not in ("limits", "requests"):
        raise ValueError(f"resourceFieldRef {ref['resource']}: neither a limit nor a request")
    amounts = (container.get("resources") or {}).get(kind) or {}
    if resource not in amounts:
        raise MissingSource(f"resourceFieldRef {ref['resource']}: not set on the container, and no node here")
    return str(math.ceil(quantity(amounts[resource]) / quantity(ref.get("divisor", "1"))))


_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def _expand(value: str, defined: Mapping[str, str]) -> str:
    def one(found: re.Match[str]) -> str:
        if found.group(0) == "$$":
            return "$"
        return defined.get(found.group(1), found.group(0))

    return _REFERENCE.sub(one, value)
