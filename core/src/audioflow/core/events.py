"""Per-meeting events on a Redis stream ``<prefix>events:<meeting>``.

The stream id is the event id and the replay cursor (``since``). Every event names its meeting; a
reader only ever opens its own meeting's stream, so nothing leaks across meetings. Nor across meetings
that had the same id: a deleted meeting's generation is remembered in ``<prefix>deleted:<meeting>``, and
nothing published for it afterwards is kept (see ``_PUBLISH``). Producers are the
gateway (async client) and the workers (sync client); both build fields with :func:`event_fields`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any, Literal, TypedDict, Unpack

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


# Every event goes through this script. It is written to the meeting's stream only while that meeting is
# alive: a publisher that knows the meeting's generation (see ``queries.generation``) is refused once that
# generation is deleted; one that does not (a forwarded log line) never creates the stream. So a worker
# still busy with a meeting when it is deleted cannot re-create its stream or marks, and nothing of it
# reaches a new meeting with the same id. With a mark, the event and a note of what it announced are
# written atomically: a worker that dies between its database commit and its event finds on redelivery
# whether the event went out (and, with ``once``, never sends it twice). With ``unless``, an event is held
# back by a mark that something else noted (see ``meeting_phase``).
_PUBLISH_FUNCTION = """
local function publish(events, announced, deleted, generation, mark, value, once, maxlen, type, ts, data)
  if generation == '' then
    if redis.call('EXISTS', events) == 0 then return false end
  elseif redis.call('SISMEMBER', deleted, generation) == 1 then
    return false
  end
  if mark ~= '' then
    if once ~= '0' and redis.call('HEXISTS', announced, mark) == 1 then return false end
    if once ~= 'unless' then redis.call('HSET', announced, mark, value) end
  end
  return redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'type', type, 'ts', ts, 'data', data)
end
"""
_PUBLISH = (
    _PUBLISH_FUNCTION
    + "return publish(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], "
    "ARGV[7], ARGV[8])\n"
)
_PUBLISH_KEYS, _PUBLISH_ARGS = 3, 8

# A :class:`WriteBatch`: ARGV is a list of operations, each a letter and its arguments, KEYS indexed
# by number. ``x``: the stream's key index, the number of field/value items, the items (an XADD).
# ``p``: the three key indexes and eight arguments of an event (``publish`` above).
_BATCH = (
    _PUBLISH_FUNCTION
    + """
local i, n = 1, #ARGV
while i <= n do
  if ARGV[i] == 'x' then
    local count = tonumber(ARGV[i + 2])
    redis.call('XADD', KEYS[tonumber(ARGV[i + 1])], '*', unpack(ARGV, i + 3, i + 2 + count))
    i = i + 3 + count
  else
    publish(KEYS[tonumber(ARGV[i + 1])], KEYS[tonumber(ARGV[i + 2])], KEYS[tonumber(ARGV[i + 3])],
            ARGV[i + 4], ARGV[i + 5], ARGV[i + 6], ARGV[i + 7], ARGV[i + 8], ARGV[i + 9], ARGV[i + 10],
            ARGV[i + 11])
    i = i + 12
  end
end
return n
"""
)


class WriteBatch:
    """Stream entries and events written together by one script call.

    As atomic as a MULTI/EXEC pipeline of the same XADDs and EVALs, at one command for all of them:
    the gateway enqueues a chunk's two work items and its events this way, and a group commit a whole
    batch's, where each command of a pipeline cost the gateway about 8 us of its own CPU (with hiredis)
    and Redis a script lookup per event."""

    def __init__(self) -> None:
        self._keys: dict[str, str] = {}  # key -> its 1-based index in KEYS, as text
        self._argv: list[EncodableT] = []

    def _key(self, key: str) -> str:
        return self._keys.setdefault(key, str(len(self._keys) + 1))

    def xadd(self, name: str, fields: Mapping[FieldT, EncodableT]) -> None:
        """XADD ``fields`` to stream ``name`` (as :meth:`redis.Redis.xadd` with an automatic id)."""
        self._argv += ["x", self._key(name), 2 * len(fields)]
        for field, value in fields.items():
            self._argv += [field, value]

    def publish(self, args: tuple[Any, ...]) -> None:
        """Publish the event of :func:`publish_args` (refused silently, as there, when its meeting is
        gone)."""
        if args[0] is not _PUBLISH or args[1] != _PUBLISH_KEYS:
            raise ValueError("not the arguments of publish_args")
        keys, rest = args[2 : 2 + _PUBLISH_KEYS], args[2 + _PUBLISH_KEYS :]
        if len(rest) != _PUBLISH_ARGS:
            raise ValueError("not the arguments of publish_args")
        self._argv += ["p", *(self._key(k) for k in keys), *rest]

    def execute(self, client: redis.Redis) -> None:
        if self._argv:
            client.eval(_BATCH, len(self._keys), *self._keys, *self._argv)


# How long a deleted generation is remembered: far longer than any handler that read the meeting before
# its deletion can still be at work (work still queued carries its generation and is checked against the
# database instead).
DELETED_TTL_S = 24 * 3600


def publish_args(
    keys: Keys,
    meeting_id: str,
    type_: EventType,
    data: Mapping[str, Any],
    *,
    generation: str | None,
    maxlen: int,
    mark: str = "",
    value: str = "1",
    once: bool = False,
    unless: str = "",
) -> tuple[Any, ...]:
    """The arguments of ``EVAL`` for one event (script, key count, keys, arguments), for a client or a
    pipeline. With ``unless``, nothing is published once that mark was noted, and nothing is noted."""
    if unless and mark:
        raise ValueError("an event either notes a mark or is held back by one")
    fields = event_fields(type_, data)
    return (
        _PUBLISH,
        3,
        keys.events(meeting_id),
        keys.announced(meeting_id),
        keys.deleted(meeting_id),
        generation or "",
        unless or mark,
        value,
        "unless" if unless else "1" if once else "0",
        maxlen,
        str(fields["type"]),
        str(fields["ts"]),
        str(fields["data"]),
    )


def _event_id(reply: Any) -> str | None:
    return None if reply is None else str(reply)


class Destination(TypedDict):
    """Which stream an event goes to, and how long that stream may grow: the meeting ``generation``
    (None: whichever is alive, and only into a stream that exists), capped approximately at ``maxlen``
    (events are a log for readers, not work, so old ones may go)."""

    generation: str | None
    maxlen: int


def publish(
    client: redis.Redis,
    keys: Keys,
    meeting_id: str,
    type_: EventType,
    data: Mapping[str, Any],
    **to: Unpack[Destination],
) -> str | None:
    """Append an event (sync) to the meeting's stream (see :class:`Destination`). Returns its id, or
    None when the meeting is gone."""
    return send(client, publish_args(keys, meeting_id, type_, data, **to))


def send(client: redis.Redis, args: tuple[Any, ...]) -> str | None:
    """Append an event (sync) given its :func:`publish_args`; see :func:`publish`."""
    return _event_id(client.eval(*args))


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
    **to: Unpack[Destination],
) -> bool:
    """Publish and note ``mark = value`` in the meeting's announced hash in one step. With ``once``,
    publish only if ``mark`` was never noted. Returns whether the event was published."""
    args = publish_args(keys, meeting_id, type_, data, mark=mark, value=value, once=once, **to)
    return client.eval(*args) is not None


def announced(client: redis.Redis, keys: Keys, meeting_id: str, mark: str) -> str | None:
    value: Any = client.hget(keys.announced(meeting_id), mark)
    return None if value is None else str(value)


def all_announced(client: redis.Redis, keys: Keys, meeting_id: str) -> dict[str, str]:
    """Every mark noted for the meeting, with its value (see ``announcements``)."""
    marks: Any = client.hgetall(keys.announced(meeting_id))
    return {str(mark): str(value) for mark, value in (marks or {}).items()}


def _entries(raw: Any) -> list[tuple[str, dict[str, str]]]:
    """``(id, fields)`` pairs of a decoded XRANGE/XREAD reply (every client decodes: core.redis_client)."""
    return [(str(i), dict(f or {})) for i, f in raw or []]


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


async def last_event_id(client: aioredis.Redis, stream: str) -> str | None:
    """The id of the stream's newest event, or None when it has none."""
    newest: Any = await client.xrevrange(stream, count=1)
    return str(newest[0][0]) if newest else None


async def apublish(client: aioredis.Redis, args: tuple[Any, ...]) -> str | None:
    """Append an event (async) given its :func:`publish_args`; see :func:`publish`. Returns its id, or
    None when the meeting is gone."""
    return _event_id(await client.eval(*args))


async def aforget(client: aioredis.Redis, keys: Keys, meeting_id: str, generation: str) -> None:
    """A meeting is being deleted: remember its generation as deleted (so that nothing published for it
    any more is kept) and remove its event stream and marks, in one step."""
    pipe = client.pipeline(transaction=True)
    pipe.sadd(keys.deleted(meeting_id), generation)
    pipe.expire(keys.deleted(meeting_id), DELETED_TTL_S)
    pipe.delete(keys.events(meeting_id), keys.announced(meeting_id))
    await pipe.execute()
