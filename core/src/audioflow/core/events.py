"""Per-meeting events on a Redis stream ``<prefix>events:<meeting>``.

The stream id is the event id and the replay cursor (``since``). Every event names its meeting; a
reader only ever opens its own meeting's stream, so nothing leaks across meetings. Producers are the
gateway (async client) and the workers (sync client); both build fields with :func:`event_fields`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any, Literal

import redis
import redis.asyncio as aioredis
from redis.typing import EncodableT, FieldT

from audioflow.core.keys import Keys

EventType = Literal[
    "chunk.received", "chunk.transcribed", "recording.extended", "chunk.failed", "meeting.phase", "log"
]
EVENT_TYPES: tuple[str, ...] = EventType.__args__  # type: ignore[attr-defined]


def event_fields(
    type_: EventType, data: Mapping[str, Any], ts: float | None = None
) -> dict[FieldT, EncodableT]:
    if type_ not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type_!r}")
    return {"type": type_, "ts": f"{time.time() if ts is None else ts:.6f}", "data": json.dumps(dict(data))}


def decode_event(meeting_id: str, event_id: str, fields: Mapping[str, str]) -> dict[str, Any]:
    """The public event shape ``{id, meeting_id, type, ts, data}``."""
    return {
        "id": event_id,
        "meeting_id": meeting_id,
        "type": fields["type"],
        "ts": float(fields["ts"]),
        "data": json.loads(fields["data"]),
    }


def publish(
    client: redis.Redis,
    keys: Keys,
    meeting_id: str,
    type_: EventType,
    data: Mapping[str, Any],
    *,
    maxlen: int,
) -> str:
    """Append an event (sync). The stream is capped approximately at ``maxlen``: events are a log for
    readers, not work, so old ones may go."""
    event_id = client.xadd(
        keys.events(meeting_id), event_fields(type_, data), maxlen=maxlen, approximate=True
    )
    return event_id.decode() if isinstance(event_id, bytes) else str(event_id)


# XADD and a note of what it announced, atomically: a worker that dies between its database commit
# and its event finds on redelivery whether the event went out (and never sends it twice).
_PUBLISH_MARKED = """
if ARGV[3] == '1' and redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return false end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[4], '*',
                  'type', ARGV[5], 'ts', ARGV[6], 'data', ARGV[7])
"""


def publish_marked(
    client: redis.Redis,
    keys: Keys,
    meeting_id: str,
    type_: EventType,
    data: Mapping[str, Any],
    *,
    mark: str,
    value: str = "1",
    once: bool,
    maxlen: int,
) -> bool:
    """Publish and note ``mark = value`` in the meeting's announced hash in one step. With ``once``,
    publish only if ``mark`` was never noted. Returns whether the event was published."""
    fields = event_fields(type_, data)
    args = [mark, value, "1" if once else "0", maxlen, fields["type"], fields["ts"], fields["data"]]
    published = client.eval(_PUBLISH_MARKED, 2, keys.events(meeting_id), keys.announced(meeting_id), *args)
    return bool(published)


def announced(client: redis.Redis, keys: Keys, meeting_id: str, mark: str) -> str | None:
    value: Any = client.hget(keys.announced(meeting_id), mark)
    return None if value is None else _text(value)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _entries(raw: Any) -> list[tuple[str, dict[str, str]]]:
    return [(_text(i), {_text(k): _text(v) for k, v in (f or {}).items()}) for i, f in raw or []]


async def read_after(
    client: aioredis.Redis, stream: str, cursor: str, *, count: int, block_ms: int | None = None
) -> list[tuple[str, dict[str, str]]]:
    """Events after ``cursor`` ("0" = from the start): one XRANGE page, or, with ``block_ms``, an XREAD
    that waits for new ones. Returns ``(id, fields)`` pairs with text fields."""
    if block_ms is None:
        low = "-" if cursor == "0" else f"({cursor}"
        return _entries(await client.xrange(stream, min=low, count=count))
    reply: Any = await client.xread({stream: "0-0" if cursor == "0" else cursor}, count=count, block=block_ms)
    if isinstance(reply, dict):  # RESP3 shape
        return _entries(next(iter(reply.values()), None))
    return _entries(reply[0][1] if reply else None)


async def apublish(
    client: aioredis.Redis,
    keys: Keys,
    meeting_id: str,
    type_: EventType,
    data: Mapping[str, Any],
    *,
    maxlen: int,
) -> str:
    """Append an event (async); see :func:`publish`."""
    event_id = await client.xadd(
        keys.events(meeting_id),
        event_fields(type_, data),
        maxlen=maxlen,
        approximate=True,
    )
    return event_id.decode() if isinstance(event_id, bytes) else str(event_id)
