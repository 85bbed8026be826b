"""What a stream consumer hands its handler (an ``Entry``) and gets back (an ``Outcome``), and reading
entries out of Redis replies."""

from __future__ import annotations

import enum
import os
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Entry", "Handler", "Outcome", "consumer_name", "fields_of", "log_context", "stream_entries"]


class Outcome(enum.Enum):
    ACK = "ack"  # done (the handler has committed its database work): XACK
    RETRY = "retry"  # transient problem: leave pending; redelivered via XAUTOCLAIM after the lease


@dataclass(frozen=True)
class Entry:
    id: str
    fields: dict[str, str]
    deliveries: int  # times delivered, this delivery included (XPENDING "times_delivered")


Handler = Callable[[Entry], Outcome]


def consumer_name(component: str) -> str:
    """A consumer name unique per process: ``{component}-{hostname}-{pid}``."""
    return f"{component}-{socket.gethostname()}-{os.getpid()}"


def fields_of(raw: object) -> dict[str, str]:
    if isinstance(raw, Mapping):
        return {str(k): str(v) for k, v in raw.items()}
    if isinstance(raw, list | tuple):  # a flat [k1, v1, k2, v2, ...] reply
        return {str(raw[i]): str(raw[i + 1]) for i in range(0, len(raw) - 1, 2)}
    return {}


def stream_entries(reply: Any) -> list[tuple[str, dict[str, str]]]:
    """``(id, fields)`` pairs of an XREADGROUP reply for one stream (RESP2 list or RESP3 map)."""
    if not reply:
        return []
    batches: Iterable[Any] = reply.values() if isinstance(reply, Mapping) else (item[1] for item in reply)
    return [(str(message[0]), fields_of(message[1])) for batch in batches for message in batch or ()]


def log_context(entry: Entry) -> dict[str, object]:
    context: dict[str, object] = {}
    if "meeting_id" in entry.fields:
        context["meeting_id"] = entry.fields["meeting_id"]
    if "seq" in entry.fields:
        seq = entry.fields["seq"]
        context["seq"] = int(seq) if seq.isdigit() else seq
    if "generation" in entry.fields:  # which meeting of that id (see MeetingLogForwarder)
        context["generation"] = entry.fields["generation"]
    return context
