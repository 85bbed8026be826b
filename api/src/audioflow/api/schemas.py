"""Public shapes: only these leave the API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from audioflow.core.db.queries import MeetingStatus
from audioflow.core.ids import MEETING_ID_PATTERN


class AudioFormatModel(BaseModel):
    sample_rate: int = Field(16000, ge=8000, le=192000)
    channels: int = Field(1, ge=1, le=8)
    bits: Literal[8, 16, 24, 32] = 16


class MeetingCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, pattern=MEETING_ID_PATTERN, description="Defaults to a generated id")
    format: AudioFormatModel = AudioFormatModel()


class MeetingPublic(BaseModel):
    id: str
    phase: Literal["pending", "live", "finalizing", "completed", "failed"]
    format: AudioFormatModel
    chunks_received: int
    chunks_transcribed: int
    chunks_failed: int
    chunks_concatenated: int
    concatenated_through: int
    highest_seq: int
    gaps: list[int]
    recording_duration_s: float
    recording_bytes: int
    failed_reason: str | None
    created_at: datetime
    ended_at: datetime | None
    updated_at: datetime | None

    @classmethod
    def of(cls, status: MeetingStatus) -> MeetingPublic:
        fmt = status.format
        return cls(
            id=status.id,
            phase=status.phase,
            format=AudioFormatModel(sample_rate=fmt.sample_rate, channels=fmt.channels, bits=fmt.bits),
            chunks_received=status.chunks_received,
            chunks_transcribed=status.chunks_transcribed,
            chunks_failed=status.chunks_failed,
            chunks_concatenated=status.chunks_concatenated,
            concatenated_through=status.concatenated_through,
            highest_seq=status.highest_seq,
            gaps=list(status.gaps),
            recording_duration_s=status.recording_duration_s,
            recording_bytes=status.recording_bytes,
            failed_reason=status.failed_reason,
            created_at=status.created_at,
            ended_at=status.ended_at,
            updated_at=status.updated_at,
        )


class MeetingList(BaseModel):
    meetings: list[MeetingPublic]


class WordPublic(BaseModel):
    text: str
    start_s: float
    end_s: float


class SegmentPublic(BaseModel):
    seq: int
    start_s: float
    end_s: float
    text: str
    words: list[WordPublic]
    error: str | None = None


class TranscriptPublic(BaseModel):
    meeting_id: str
    segments: list[SegmentPublic]


class ChunkAccepted(BaseModel):
    meeting_id: str
    seq: int
    status: Literal["created", "duplicate"]
    bytes: int
    duration_s: float
    sha256: str


class WebhookChunk(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    meeting_id: str = Field(alias="meetingId", max_length=4096)  # its rules: ids.check_meeting_id
    seq: int = Field(strict=True)
    url: str = Field(min_length=1, max_length=4096)


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorEnvelope(BaseModel):
    error: ErrorBody


class EventPublic(BaseModel):
    id: str
    meeting_id: str
    type: str
    ts: float
    data: dict[str, Any]


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    checks: dict[str, str]


# Every error a route can answer, in the envelope of ``errors.py`` (408 and 413 come from guards.BodyGuard).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorEnvelope} for code in (400, 401, 403, 404, 408, 409, 413, 415, 422, 503)
}
