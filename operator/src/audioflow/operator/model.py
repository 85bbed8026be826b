"""The Meeting resource as the operator reads and writes it: spec parsing, status fields, conditions.

Pure functions only (no I/O), so that the rules are tested as tables.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from audioflow.core.errors import AudioflowError
from audioflow.core.ids import check_meeting_id
from audioflow.core.meeting_model import MeetingPublic, Phase
from audioflow.core.wav import AudioFormat

GROUP = "audioflow.io"
VERSION = "v1alpha1"
PLURAL = "meetings"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "Meeting"

#: The gateway's phases (design §3) as Kubernetes-style phase names.
PHASES: dict[Phase, str] = {
    "pending": "Pending",
    "live": "Live",
    "finalizing": "Finalizing",
    "completed": "Completed",
    "failed": "Failed",
}
FINISHED = frozenset({"Completed", "Failed"})

# Condition types.
GATEWAY_REACHABLE = "GatewayReachable"
REGISTERED = "Registered"
SIMULATED = "Simulated"
COMPLETED = "Completed"


class InvalidSpec(ValueError):
    """The Meeting's spec cannot be used as it is (retrying will not help)."""

    reason = "InvalidSpec"


class FormatConflict(ValueError):
    """The gateway already has this meeting id, with another audio format."""

    reason = "FormatConflict"


@dataclass(frozen=True)
class SecretRef:
    name: str
    key: str


@dataclass(frozen=True)
class Simulate:
    chunks: int | None = None
    chunk_seconds: float = 5.0
    shuffle: bool = False
    duplicates: int = 0
    rate: float = 0.0


@dataclass(frozen=True)
class MeetingSpec:
    meeting_id: str
    audio: AudioFormat
    engine: str = "whisper"
    language: str = "en-us"
    webhook_secret: SecretRef | None = None
    simulate: Simulate | None = None  # None: absent or disabled
    retention_policy: Literal["Keep", "Delete"] = "Keep"
    retention_after_s: int | None = None

    @classmethod
    def parse(cls, spec: Mapping[str, Any], name: str) -> MeetingSpec:
        """Read ``spec`` (the CRD schema has validated and defaulted it; this checks again, since
        a resource may predate the schema). :class:`InvalidSpec` names the field."""
        meeting_id = spec.get("meetingId") or name
        try:
            check_meeting_id(meeting_id)
        except AudioflowError as exc:
            where = "spec.meetingId" if spec.get("meetingId") else "metadata.name (the default meetingId)"
            raise InvalidSpec(f"{where}: {exc}") from None

        audio = _mapping(spec, "audio")
        try:
            fmt = AudioFormat(
                _int(audio, "sampleRate", 16000, "spec.audio"),
                _int(audio, "channels", 1, "spec.audio"),
                _int(audio, "bitsPerSample", 16, "spec.audio"),
            )
        except InvalidSpec:
            raise
        except ValueError as exc:  # the format's own checks (supported rates, channels, bits)
            raise InvalidSpec(f"spec.audio: {exc}") from None

        transcription = _mapping(spec, "transcription")
        secret = None
        if ref := _mapping(spec, "webhookSecretRef"):
            if not isinstance(ref.get("name"), str) or not ref["name"]:
                raise InvalidSpec("spec.webhookSecretRef.name is required")
            secret = SecretRef(ref["name"], str(ref.get("key") or "webhook-secret"))

        simulate = None
        sim = _mapping(spec, "simulate")
        if spec.get("simulate") is not None and sim.get("enabled", True):
            chunks = sim.get("chunks")
            simulate = Simulate(
                chunks=None if chunks is None else _int(sim, "chunks", 1, "spec.simulate", low=1),
                chunk_seconds=_number(sim, "chunkSeconds", 5.0, "spec.simulate", low=0.1),
                shuffle=bool(sim.get("shuffle", False)),
                duplicates=_int(sim, "duplicates", 0, "spec.simulate", low=0),
                rate=_number(sim, "rate", 0.0, "spec.simulate", low=0.0),
            )

        retention = _mapping(spec, "retention")
        policy = retention.get("policy", "Keep")
        if policy not in ("Keep", "Delete"):
            raise InvalidSpec(f"spec.retention.policy: {policy!r} is not Keep or Delete")
        after = retention.get("afterSeconds")
        return cls(
            meeting_id=meeting_id,
            audio=fmt,
            engine=str(transcription.get("engine", "whisper")),
            language=str(transcription.get("language", "en-us")),
            webhook_secret=secret,
            simulate=simulate,
            retention_policy=policy,
            retention_after_s=None if after is None else _int(retention, "afterSeconds", 0, "spec.retention"),
        )


def _mapping(spec: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = spec.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidSpec(f"spec.{key} must be an object")
    return value


def _int(block: Mapping[str, Any], key: str, default: int, where: str, low: int | None = 0) -> int:
    value = block.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidSpec(f"{where}.{key}: {value!r} is not an integer")
    if low is not None and value < low:
        raise InvalidSpec(f"{where}.{key}: {value} is below {low}")
    return value


def _number(block: Mapping[str, Any], key: str, default: float, where: str, low: float) -> float:
    value = block.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidSpec(f"{where}.{key}: {value!r} is not a number")
    if value < low:
        raise InvalidSpec(f"{where}.{key}: {value} is below {low}")
    return float(value)


def now_iso(now: datetime.datetime | None = None) -> str:
    moment = now or datetime.datetime.now(datetime.UTC)
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(value: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


def set_condition(
    conditions: Sequence[Mapping[str, Any]],
    type: str,
    status: bool | None,
    reason: str,
    message: str = "",
    *,
    now: str,
    generation: int | None = None,
) -> list[dict[str, Any]]:
    """The conditions with ``type`` set; ``lastTransitionTime`` moves only when the status changes."""
    value = "Unknown" if status is None else "True" if status else "False"
    result: list[dict[str, Any]] = []
    found = False
    for condition in conditions:
        if condition.get("type") != type:
            result.append(dict(condition))
            continue
        found = True
        changed = condition.get("status") != value
        since = now if changed else _since(condition, now)
        result.append(_condition(type, value, reason, message, since, generation))
    if not found:
        result.append(_condition(type, value, reason, message, now, generation))
    return result


def _since(condition: Mapping[str, Any], now: str) -> str:
    since = condition.get("lastTransitionTime")
    return since if isinstance(since, str) and since else now


def _condition(
    type: str, status: str, reason: str, message: str, since: str, generation: int | None
) -> dict[str, Any]:
    condition: dict[str, Any] = {
        "type": type,
        "status": status,
        "reason": reason,
        "message": message[:1024],
        "lastTransitionTime": since,
    }
    if generation is not None:
        condition["observedGeneration"] = generation
    return condition


def condition_status(conditions: Sequence[Mapping[str, Any]], type: str) -> str | None:
    for condition in conditions:
        if condition.get("type") == type:
            status = condition.get("status")
            return status if isinstance(status, str) else None
    return None


def status_from_meeting(meeting: MeetingPublic, recording_url: str) -> dict[str, Any]:
    """The Meeting's status fields from the gateway's ``GET /v1/meetings/{id}`` answer."""
    received = meeting.chunks_received
    transcribed = meeting.chunks_transcribed
    failed = meeting.chunks_failed
    concatenated = meeting.chunks_concatenated
    return {
        "phase": PHASES[meeting.phase],
        "meetingId": meeting.id,
        "chunksReceived": received,
        "chunksTranscribed": transcribed,
        "chunksFailed": failed,
        "chunksConcatenated": concatenated,
        "concatenatedThrough": meeting.concatenated_through,
        "gaps": len(meeting.gaps),
        "durationSeconds": round(meeting.recording_duration_s, 3),
        "recordingBytes": meeting.recording_bytes,
        "backlog": max(0, received - transcribed - failed, received - concatenated),
        "recordingURL": recording_url,
    }


def same_format(meeting: MeetingPublic, fmt: AudioFormat) -> bool:
    return meeting.format.matches(fmt)


def job_name(meeting_name: str) -> str:
    """The simulator Job's name: ``<meeting>-simulate``, kept within 63 characters (it becomes a label)."""
    name = f"{meeting_name}-simulate"
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(meeting_name.encode()).hexdigest()[:8]
    return f"{meeting_name[:45].rstrip('-.')}-{digest}-simulate"
