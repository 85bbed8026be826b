"""The Meeting CRD (``crds/meeting.yaml``) on the real API server (kube-apiserver of the pinned version).

What only an API server decides, and so is proven here rather than by reading the YAML: that the CRD is
structural and accepted (``Established``, names accepted), that every CEL rule in it compiles and rejects
what it should with its own message (transition rules see the stored object as ``oldSelf``), that the
schema defaults are applied as the server applies them (nested defaults under a ``default: {}``), that
every example applies server-side, that the status subresource keeps ``.status`` apart from ``.spec``
(status writes do not bump ``metadata.generation``), and that ``kubectl get meetings`` prints the
declared printer columns with their values.

What this does not show: the operator acting on Meetings (``test_operator.py``), and conversion or
storage-version migration (the CRD has one version).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chart import tools
from tests.kube.controlplane import ROOT, ControlPlane
from tests.kube.operator_process import apply_crd

CRD_FILE = ROOT / "crds" / "meeting.yaml"
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
Manifest = dict[str, Any]


def _version(crd: Manifest) -> Manifest:
    (version,) = crd["spec"]["versions"]
    return dict(version)


def _schema(crd: Manifest) -> Manifest:
    return dict(_version(crd)["schema"]["openAPIV3Schema"])


@pytest.fixture(scope="module")
def crd(control_plane: ControlPlane) -> Iterator[Manifest]:
    """The CRD as the repository has it, applied (server-side, idempotent: other modules apply it too)
    and Established."""
    apply_crd(control_plane)
    yield tools.load_yaml(CRD_FILE.read_text(encoding="utf-8"))


def meeting(name: str, spec: Manifest | None = None) -> Manifest:
    return {
        "apiVersion": "audioflow.io/v1alpha1",
        "kind": "Meeting",
        "metadata": {"name": name},
        "spec": spec if spec is not None else {},
    }


def create(plane: ControlPlane, namespace: str, manifest: Manifest, check: bool = True) -> Any:
    return plane.kubectl(
        "create", "--namespace", namespace, "-f", "-", input=json.dumps(manifest), check=check
    )


def patch(
    plane: ControlPlane, namespace: str, name: str, body: Any, kind: str = "merge", status: bool = False
) -> Any:
    extra = ["--subresource=status"] if status else []
    return plane.kubectl(
        "patch", "meeting", name, "--namespace", namespace, *extra, f"--type={kind}",
        "-p", json.dumps(body), check=False,
    )  # fmt: skip


def stored(plane: ControlPlane, namespace: str, name: str) -> Manifest:
    found = plane.get("meeting", name, namespace)
    assert found is not None, f"meeting {name} is missing"
    return found


# ---- the CRD itself ----------------------------------------------------------------------------------


def test_crd_is_established_and_served(control_plane: ControlPlane, crd: Manifest, namespace: str) -> None:
    live = control_plane.get("crd", crd["metadata"]["name"])
    assert live is not None
    conditions = {c["type"]: c["status"] for c in live["status"]["conditions"]}
    assert conditions["Established"] == "True"
    assert conditions["NamesAccepted"] == "True"
    assert conditions.get("NonStructuralSchema", "False") == "False"
    assert live["status"]["acceptedNames"]["shortNames"] == crd["spec"]["names"]["shortNames"]
    resources = control_plane.kubectl("api-resources", "--api-group=audioflow.io", "-o", "wide").stdout
    row = resources.splitlines()[1].split()
    # NAME SHORTNAMES APIVERSION NAMESPACED KIND VERBS CATEGORIES
    assert row[:5] == ["meetings", "mtg", "audioflow.io/v1alpha1", "true", "Meeting"]
    assert row[-1] == "audioflow"
    create(control_plane, namespace, meeting("by-short-name"))
    for name in ("mtg", "audioflow", "meetings.audioflow.io"):  # short name, category, full name
        listed = control_plane.kubectl("get", name, "--namespace", namespace, "-o", "name").stdout
        assert listed.split() == ["meeting.audioflow.io/by-short-name"], name


# ---- CEL rules: each one rejects what it should, with its own message ---------------------------------


def _rules(schema: Manifest, path: str = "") -> list[tuple[str, str, str]]:
    """(path, rule, message) of every x-kubernetes-validations entry under ``schema``."""
    found = [(path or ".", r["rule"], r["message"]) for r in schema.get("x-kubernetes-validations", [])]
    for key, sub in (schema.get("properties") or {}).items():
        found += _rules(sub, f"{path}.{key}")
    if "items" in schema:
        found += _rules(schema["items"], f"{path}[]")
    return found


# message -> (created spec, patch type, patch): the update the rule must refuse.
REFUSED: dict[str, tuple[Manifest, str, Any]] = {
    "meetingId is immutable": (
        {"meetingId": "first"},
        "merge",
        {"spec": {"meetingId": "second"}},
    ),
    "audio is immutable": (
        {"audio": {"sampleRate": 16000}},
        "merge",
        {"spec": {"audio": {"sampleRate": 48000}}},
    ),
    "meetingId cannot be added or removed after creation": (
        {},
        "merge",
        {"spec": {"meetingId": "added-later"}},
    ),
}
# The same rule from the other side: removing the id.
REMOVED = ({"meetingId": "set-at-creation"}, "json", [{"op": "remove", "path": "/spec/meetingId"}])


def test_every_cel_rule_has_a_case_here(crd: Manifest) -> None:
    messages = {message for _, _, message in _rules(_schema(crd))}
    assert messages == set(REFUSED), "a CEL rule was added or changed: give it a case in REFUSED"


@pytest.mark.parametrize(
    ("message", "case"),
    [*REFUSED.items(), ("meetingId cannot be added or removed after creation", REMOVED)],
    ids=[*REFUSED, "meetingId cannot be removed"],
)
def test_cel_rule_refuses_with_its_message(
    control_plane: ControlPlane, crd: Manifest, namespace: str, message: str, case: tuple[Manifest, str, Any]
) -> None:
    spec, kind, body = case
    create(control_plane, namespace, meeting("m", spec))
    before = stored(control_plane, namespace, "m")
    refused = patch(control_plane, namespace, "m", body, kind)
    assert refused.returncode != 0, f"the API server accepted {body}"
    assert "is invalid" in refused.stderr and message in refused.stderr, refused.stderr
    after = stored(control_plane, namespace, "m")
    assert after["spec"] == before["spec"]
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def test_cel_rules_let_other_updates_through(
    control_plane: ControlPlane, crd: Manifest, namespace: str
) -> None:
    """The transition rules compare with the stored, defaulted object: restating the defaults, or
    changing anything else, is no change to what they guard."""
    create(control_plane, namespace, meeting("m", {"meetingId": "m-1"}))
    create(control_plane, namespace, meeting("minimal"))
    for name, body in [
        ("m", {"spec": {"simulate": {"rate": 5}, "retention": {"policy": "Delete"}}}),
        ("m", {"spec": {"meetingId": "m-1", "audio": {"sampleRate": 16000, "channels": 1}}}),
        ("minimal", {"spec": {"audio": {"bitsPerSample": 16}, "transcription": {"engine": "whisper"}}}),
    ]:
        result = patch(control_plane, namespace, name, body)
        assert result.returncode == 0, result.stderr
    assert stored(control_plane, namespace, "m")["spec"]["retention"]["policy"] == "Delete"
    assert "meetingId" not in stored(control_plane, namespace, "minimal")["spec"]
    # kubectl apply of the unchanged minimal manifest (an update carrying no meetingId and no audio).
    minimal = json.dumps(meeting("minimal"))
    control_plane.kubectl("apply", "--namespace", namespace, "-f", "-", input=minimal)


# ---- OpenAPI validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"meetingId": ".hidden"}, "spec.meetingId in body should match"),
        ({"meetingId": "x" * 129}, "spec.meetingId: Too long"),
        ({"audio": {"sampleRate": 12345}}, "spec.audio.sampleRate: Unsupported value: 12345"),
        ({"audio": {"channels": 9}}, "spec.audio.channels: Invalid value: 9"),
        ({"transcription": {"engine": "vosk"}}, 'spec.transcription.engine: Unsupported value: "vosk"'),
        ({"webhookSecretRef": {"key": "k"}}, "spec.webhookSecretRef.name: Required value"),
        ({"retention": {"policy": "Archive"}}, 'spec.retention.policy: Unsupported value: "Archive"'),
    ],
)
def test_schema_refuses_bad_specs(
    control_plane: ControlPlane, crd: Manifest, namespace: str, spec: Manifest, expected: str
) -> None:
    refused = create(control_plane, namespace, meeting("bad", spec), check=False)
    assert refused.returncode != 0 and expected in refused.stderr, refused.stderr


def test_spec_is_required(control_plane: ControlPlane, crd: Manifest, namespace: str) -> None:
    manifest = meeting("no-spec")
    del manifest["spec"]
    refused = create(control_plane, namespace, manifest, check=False)
    assert refused.returncode != 0 and "spec: Required value" in refused.stderr, refused.stderr


# ---- defaults -------------------------------------------------------------------------------------------


def defaulted(schema: Manifest, value: Any) -> Any:
    """``value`` with the schema's defaults applied the way the API server does for a structural schema:
    an absent property with a default gets it, then its own properties get theirs (so ``default: {}``
    brings the nested defaults)."""
    if isinstance(value, dict) and "properties" in schema:
        result = dict(value)
        for key, sub in schema["properties"].items():
            if key not in result and "default" in sub:
                result[key] = copy.deepcopy(sub["default"])
            if key in result:
                result[key] = defaulted(sub, result[key])
        return result
    if isinstance(value, list) and "items" in schema:
        return [defaulted(schema["items"], item) for item in value]
    return value


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {
            "audio": {"sampleRate": 48000},
            "transcription": {},
            "webhookSecretRef": {"name": "hooks"},
            "simulate": {},
            "retention": {"afterSeconds": 60},
        },
    ],
    ids=["minimal", "partial objects"],
)
def test_schema_defaults_are_applied(
    control_plane: ControlPlane, crd: Manifest, namespace: str, spec: Manifest
) -> None:
    spec_schema = _schema(crd)["properties"]["spec"]
    expected = defaulted(spec_schema, spec)
    assert expected != spec, "the CRD declares defaults for these fields"
    create(control_plane, namespace, meeting("d", spec))
    assert stored(control_plane, namespace, "d")["spec"] == expected


def test_minimal_meeting_gets_the_documented_format(
    control_plane: ControlPlane, crd: Manifest, namespace: str
) -> None:
    """The literal values, so that a changed default in the CRD is a visible decision."""
    create(control_plane, namespace, meeting("weekly"))
    assert stored(control_plane, namespace, "weekly")["spec"] == {
        "audio": {"sampleRate": 16000, "channels": 1, "bitsPerSample": 16},
        "retention": {"policy": "Keep"},
    }


# ---- examples -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_applies_server_side(
    control_plane: ControlPlane, crd: Manifest, namespace: str, example: Path
) -> None:
    manifest = tools.load_yaml(example.read_text(encoding="utf-8"))
    control_plane.kubectl("apply", "--server-side", "--namespace", namespace, "-f", str(example))
    live = stored(control_plane, namespace, manifest["metadata"]["name"])
    assert live["spec"] == defaulted(_schema(crd)["properties"]["spec"], manifest["spec"])
    again = control_plane.kubectl("apply", "--server-side", "--namespace", namespace, "-f", str(example))
    assert "serverside-applied" in again.stdout
    assert stored(control_plane, namespace, manifest["metadata"]["name"])["metadata"]["generation"] == 1


# ---- status subresource and printer columns -------------------------------------------------------------

STATUS = {
    "phase": "Live",
    "meetingId": "standup-7",
    "chunksReceived": 12,
    "chunksTranscribed": 9,
    "durationSeconds": 57.5,
    "backlog": 3,
}


def test_status_is_a_subresource(control_plane: ControlPlane, crd: Manifest, namespace: str) -> None:
    create(control_plane, namespace, meeting("s", {"meetingId": "standup-7"}))
    ignored = patch(control_plane, namespace, "s", {"status": STATUS})
    assert ignored.returncode == 0, ignored.stderr
    assert "status" not in stored(control_plane, namespace, "s"), "status written through the main resource"
    written = patch(control_plane, namespace, "s", {"status": STATUS}, status=True)
    assert written.returncode == 0, written.stderr
    live = stored(control_plane, namespace, "s")
    assert live["status"] == STATUS
    assert live["metadata"]["generation"] == 1, "a status write is no new generation"
    assert patch(control_plane, namespace, "s", {"spec": {"simulate": {}}}).returncode == 0
    assert stored(control_plane, namespace, "s")["metadata"]["generation"] == 2
    refused = patch(control_plane, namespace, "s", {"status": {"phase": "Paused"}}, status=True)
    assert refused.returncode != 0 and 'status.phase: Unsupported value: "Paused"' in refused.stderr
    refused = patch(control_plane, namespace, "s", {"status": {"backlog": -1}}, status=True)
    assert refused.returncode != 0 and "status.backlog" in refused.stderr


def _table(output: str) -> dict[str, str]:
    """The header and the one row of kubectl's table, as header -> cell (cells hold no spaces here)."""
    header, row = output.splitlines()
    return dict(zip(header.split(), row.split(), strict=True))


def test_kubectl_get_prints_the_columns_with_values(
    control_plane: ControlPlane, crd: Manifest, namespace: str
) -> None:
    create(control_plane, namespace, meeting("standup", {"meetingId": "standup-7"}))
    assert patch(control_plane, namespace, "standup", {"status": STATUS}, status=True).returncode == 0
    columns = _version(crd)["additionalPrinterColumns"]

    def expected(column: Manifest) -> str | None:
        path = column["jsonPath"]
        return str(STATUS[path.removeprefix(".status.")]) if path.startswith(".status.") else None

    for wide in (False, True):
        output = control_plane.kubectl(
            "get", "meetings", "--namespace", namespace, *(["-o", "wide"] if wide else [])
        ).stdout
        table = _table(output)
        shown = [c for c in columns if wide or c.get("priority", 0) == 0]
        assert list(table) == ["NAME", *(c["name"].upper() for c in shown)], output
        assert table["NAME"] == "standup"
        for column in shown:
            value = expected(column)
            cell = table[column["name"].upper()]
            if value is not None:
                assert cell == value, f"{column['name']}: {cell!r} in\n{output}"
            else:  # Age: a duration such as 3s
                assert column["type"] == "date" and cell[:-1].isdigit(), output
    assert {"BACKLOG", "MEETING-ID"} <= set(_table(output)), "-o wide shows the priority-1 columns"
