"""The meeting as the reader API shows it (``GET /v1/meetings/{id}`` and friends): one model for the
gateway that answers (``queries.meeting_status`` builds it from the rows, ``api/schemas.py`` re-exports
it, and the OpenAPI document is built from it) and for the operator's gateway client that reads the
answers. Only pydantic here, so every member can use it.

No class docstrings: they would become descriptions in the OpenAPI document, and the page's generated
types with it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, TypeAlias

from pydantic import BaseModel, Field

from audioflow.core.wav import AudioFormat

Phase: TypeAlias = Literal["pending", "live", "finalizing", "completed", "failed"]


class AudioFormatModel(BaseModel):
    sample_rate: int = Field(16000, ge=8000, le=192000)
    channels: int = Field(1, ge=1, le=8)
    bits: Literal[8, 16, 24, 32] = 16

    def matches(self, fmt: AudioFormat) -> bool:
        return (self.sample_rate, self.channels, self.bits) == (fmt.sample_rate, fmt.channels, fmt.bits)


class MeetingPublic(BaseModel):
    id: str
    phase: Phase
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
