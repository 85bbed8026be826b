"""A work entry of either stream, decoded and re-validated: which chunk of which meeting."""

from __future__ import annotations

from dataclasses import dataclass

from audioflow.core.ids import check_meeting_id, parse_seq
from audioflow.core.streams.consumer import Entry


@dataclass(frozen=True)
class Work:
    meeting_id: str
    seq: int
    generation: str | None = None  # which meeting of that id (None: an entry from before generations)

    @classmethod
    def of(cls, entry: Entry) -> Work:
        """Decode and re-validate a work entry (it came from our own gateway, but a stream is no proof)."""
        generation = entry.fields.get("generation") or None
        if generation is not None and not generation.isdigit():
            raise ValueError(f"work entry generation {generation[:40]!r} is not a number")
        return cls(
            check_meeting_id(entry.fields.get("meeting_id", "")),
            parse_seq(entry.fields.get("seq", "")),
            generation,
        )
