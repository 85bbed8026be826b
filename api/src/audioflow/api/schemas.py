"""Public shapes: only these leave the API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from audioflow.core.ids import MEETING_ID_PATTERN

# The meeting's shapes are shared with the operator's gateway client, so they live in core.
from audioflow.core.meeting_model import AudioFormatModel as AudioFormatModel
from audioflow.core.meeting_model import MeetingPublic as MeetingPublic


class MeetingCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, pattern=MEETING_ID_PATTERN, description="Defaults to a generated id")
    format: AudioFormatModel = AudioFormatModel()


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
