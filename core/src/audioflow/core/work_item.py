"""The wire contract of the work streams (``af:transcribe`` and ``af:concat``): which chunk of which
meeting. The gateway queues with ``WorkItem.add_to``; the workers decode with ``WorkItem.of``; nothing
else spells these field names, so the two sides cannot drift apart."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from redis.typing import EncodableT, FieldT

from audioflow.core.ids import check_meeting_id, parse_seq
from audioflow.core.streams.consumer import Entry

__all__ = ["StreamWriter", "WorkItem"]


class StreamWriter(Protocol):
    """Where an XADD can go: a Redis client, a pipeline, or an ``events.WriteBatch``."""

    def xadd(self, name: str, fields: dict[FieldT, EncodableT]) -> Any: ...


@dataclass(frozen=True)
class WorkItem:
    meeting_id: str
    seq: int
    generation: str | None = None  # which meeting of that id (None: an entry from before generations)

    def fields(self) -> dict[str, str]:
        """The entry's fields as XADD takes them. The generation lets workers drop work for a meeting
        that was deleted meanwhile."""
        fields = {"meeting_id": self.meeting_id, "seq": str(self.seq)}
        if self.generation is not None:
            fields["generation"] = self.generation
        return fields

    def add_to(self, client: StreamWriter, stream: str) -> None:
        """XADD this item to ``stream`` (on a client or inside a pipeline, which is one)."""
        wire: dict[FieldT, EncodableT] = {key: value for key, value in self.fields().items()}
        client.xadd(stream, wire)

    @classmethod
    def decode(cls, fields: Mapping[str, str]) -> WorkItem:
        """Decode and re-validate (the entry came from our own gateway, but a stream is no proof)."""
        generation = fields.get("generation") or None
        if generation is not None and not generation.isdigit():
            raise ValueError(f"work entry generation {generation[:40]!r} is not a number")
        return cls(
            check_meeting_id(fields.get("meeting_id", "")), parse_seq(fields.get("seq", "")), generation
        )

    @classmethod
    def of(cls, entry: Entry) -> WorkItem:
        return cls.decode(entry.fields)
