"""The Meeting CRD: a structural schema that every example in ``examples/`` satisfies and that refuses
bad meetings. CRs are checked against ``openAPIV3Schema`` with ``jsonschema`` (the Kubernetes
extensions, ``x-kubernetes-*``, are not JSON Schema keywords and are ignored by it; CEL rules are not
evaluated here)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml  # type: ignore[import-untyped]

from audioflow.core.ids import MEETING_ID_PATTERN

ROOT = Path(__file__).resolve().parents[2]
CRD = yaml.safe_load((ROOT / "crds" / "meeting.yaml").read_text())
VERSION = CRD["spec"]["versions"][0]
SCHEMA = VERSION["schema"]["openAPIV3Schema"]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def documents(path: Path) -> Iterator[dict[str, Any]]:
    yield from (doc for doc in yaml.safe_load_all(path.read_text()) if doc)


def errors(obj: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(SCHEMA)
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)]


def test_names_scope_and_printer_columns() -> None:
    spec = CRD["spec"]
    assert CRD["metadata"]["name"] == "meetings.audioflow.io"
    assert (spec["group"], spec["scope"], spec["names"]["kind"]) == ("audioflow.io", "Namespaced", "Meeting")
    assert spec["names"]["shortNames"] == ["mtg"]
    assert (VERSION["name"], VERSION["served"], VERSION["storage"]) == ("v1alpha1", True, True)
    assert VERSION["subresources"] == {"status": {}}
    columns = {c["name"]: c for c in VERSION["additionalPrinterColumns"] if c.get("priority", 0) == 0}
    assert list(columns) == ["Phase", "Chunks", "Transcribed", "Duration", "Age"]
    status = SCHEMA["properties"]["status"]["properties"]
    for column in VERSION["additionalPrinterColumns"]:
        path = column["jsonPath"].lstrip(".").split(".")
        if path[0] == "status":
            assert path[1] in status, f"column {column['name']} points at an undeclared field"


def test_schema_is_structural() -> None:
    """Every node says its type (or explicitly preserves unknown fields), as Kubernetes requires."""

    def walk(node: dict[str, Any], where: str) -> None:
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), f"{where} has no type"
        for name, child in node.get("properties", {}).items():
            walk(child, f"{where}.{name}")
        if "items" in node:
            walk(node["items"], f"{where}[]")

    walk(SCHEMA, "")
    assert SCHEMA["properties"]["spec"]["properties"]["meetingId"]["pattern"] == MEETING_ID_PATTERN


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_validates(path: Path) -> None:
    found = list(documents(path))
    assert found, f"{path} holds no document"
    for doc in found:
        assert (doc["apiVersion"], doc["kind"]) == ("audioflow.io/v1alpha1", "Meeting")
        assert errors(doc) == []


def test_examples_include_a_simulated_meeting() -> None:
    specs = [doc["spec"] for path in EXAMPLES for doc in documents(path)]
    assert len(EXAMPLES) >= 2
    assert any(spec.get("simulate", {}).get("enabled", False) for spec in specs)


FULL: dict[str, Any] = {
    "apiVersion": "audioflow.io/v1alpha1",
    "kind": "Meeting",
    "metadata": {"name": "full"},
    "spec": {
        "meetingId": "Full_1.a-b",
        "audio": {"sampleRate": 44100, "channels": 2, "bitsPerSample": 24},
        "transcription": {"engine": "whisper", "language": "en-us"},
        "webhookSecretRef": {"name": "audioflow-secrets", "key": "webhook-secret"},
        "simulate": {
            "enabled": True,
            "chunks": 4,
            "chunkSeconds": 2.5,
            "shuffle": True,
            "duplicates": 1,
            "rate": 0,
        },
        "retention": {"policy": "Delete", "afterSeconds": 0},
    },
    "status": {
        "phase": "Live",
        "chunksReceived": 3,
        "durationSeconds": 7.5,
        "conditions": [{"type": "Registered", "status": "True", "reason": "Registered"}],
    },
}


def test_a_full_meeting_validates() -> None:
    assert errors(FULL) == []


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("spec.meetingId", ".hidden"),
        ("spec.meetingId", "has space"),
        ("spec.meetingId", "x" * 129),
        ("spec.audio.sampleRate", 12345),
        ("spec.audio.channels", 0),
        ("spec.audio.channels", 9),
        ("spec.audio.bitsPerSample", 12),
        ("spec.transcription.engine", "vosk"),
        ("spec.webhookSecretRef", {"key": "k"}),
        ("spec.simulate.chunks", 0),
        ("spec.simulate.chunkSeconds", 0),
        ("spec.simulate.rate", -1),
        ("spec.retention.policy", "Archive"),
        ("spec.retention.afterSeconds", -5),
        ("status.phase", "Running"),
        ("status.conditions", [{"type": "Registered", "status": "Maybe"}]),
    ],
)
def test_bad_meetings_are_refused(path: str, value: Any) -> None:
    obj = copy.deepcopy(FULL)
    *parents, leaf = path.split(".")
    node = obj
    for part in parents:
        node = node[part]
    node[leaf] = value
    assert errors(obj), f"{path}={value!r} was accepted"
