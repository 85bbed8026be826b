"""Redis key names, all under one configurable prefix so that deployments and test runs never collide."""

from __future__ import annotations

from dataclasses import dataclass

from audioflow.core.ids import check_meeting_id

PROCESSING_GROUP = "processing"
CONCAT_GROUP = "concat"


@dataclass(frozen=True)
class Keys:
    prefix: str = "af:"

    @property
    def transcribe(self) -> str:
        """Work for the processing (speech-to-text) workers."""
        return f"{self.prefix}transcribe"

    @property
    def concat(self) -> str:
        """Work for the concat (recording) workers."""
        return f"{self.prefix}concat"

    def events(self, meeting_id: str) -> str:
        """The per-meeting event stream that WebSocket clients replay and follow."""
        return f"{self.prefix}events:{check_meeting_id(meeting_id)}"

    def announced(self, meeting_id: str) -> str:
        """What the workers have announced for a meeting (a hash), so a redelivery announces once."""
        return f"{self.prefix}announced:{check_meeting_id(meeting_id)}"

    def deleted(self, meeting_id: str) -> str:
        """The generations of a meeting id that were deleted (a set, with an expiry): what is still
        published for one of them is dropped, so nothing of a deleted meeting reaches a new one."""
        return f"{self.prefix}deleted:{check_meeting_id(meeting_id)}"
