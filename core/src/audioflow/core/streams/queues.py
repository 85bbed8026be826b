"""Queue administration: enqueue work, create groups, dead-letter, trim what every group finished,
measure backlog.

``trim_acknowledged`` trims only what every group has finished (Redis 7 trims ignore consumer
groups), and ``backlog`` counts a group's remaining work without trusting ``XINFO GROUPS`` ``lag``
blindly (Redis reports it as nil after deletions). Clients decode replies (``core.redis_client``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis
from redis.exceptions import ResponseError
from redis.typing import EncodableT, FieldT

from audioflow.core.streams.entries import Entry

__all__ = [
    "backlog",
    "dead_letter_stream",
    "enqueue",
    "ensure_group",
    "move_to_dead_letter",
    "trim_acknowledged",
]

_MAX_SEQ = 2**64 - 1
_RANGE_PAGE = 1000


def dead_letter_stream(stream: str) -> str:
    return f"{stream}:dead"


def enqueue(client: redis.Redis, stream: str, fields: Mapping[str, str | int]) -> str:
    """XADD ``fields`` (values as strings) and return the new entry's id. No MAXLEN: trimming is
    ``trim_acknowledged``'s job, which never drops unfinished work."""
    return str(client.xadd(stream, {key: str(value) for key, value in fields.items()}))


def move_to_dead_letter(client: redis.Redis, stream: str, group: str, entry: Entry, reason: str) -> str:
    """Copy ``entry`` (with why, its id, deliveries and group) to the dead-letter stream and acknowledge
    it, in one transaction; return the dead-letter stream's name."""
    fields: dict[FieldT, EncodableT] = {key: value for key, value in entry.fields.items()}
    fields.update(reason=reason, original_id=entry.id, deliveries=entry.deliveries, group=group)
    pipe = client.pipeline(transaction=True)
    pipe.xadd(dead_letter_stream(stream), fields)
    pipe.xack(stream, group, entry.id)
    pipe.execute()
    return dead_letter_stream(stream)


def ensure_group(client: redis.Redis, stream: str, group: str) -> None:
    """Create ``group`` at id 0 (it reads the whole stream), creating the stream if needed.
    An existing group is left as it is; any other error propagates."""
    try:
        client.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if not str(exc).startswith("BUSYGROUP"):
            raise


def trim_acknowledged(client: redis.Redis, stream: str) -> int:
    """Remove the entries every group has finished; return how many were removed.

    The floor is, over all groups, the lowest of the group's oldest pending id and the id right
    after its last-delivered-id; ``XTRIM MINID`` (exact) removes only entries below it, so no
    pending or undelivered entry is ever dropped. A stream without groups is left alone.
    (Trimming only delivered entries also keeps Redis 7.0's ``lag`` correct; trimming undelivered
    ones makes 7.0 over-count it, redis/redis#13957.)
    """
    groups = _groups(client, stream)
    if not groups:
        return 0
    floor: str | None = None
    for info in groups:
        bound = _next_id(str(info["last-delivered-id"]))
        oldest = client.xpending(stream, str(info["name"])).get("min")
        if oldest is not None:
            bound = min(bound, str(oldest), key=_id_key)
        floor = bound if floor is None else min(floor, bound, key=_id_key)
    assert floor is not None
    return int(client.xtrim(stream, minid=floor, approximate=False))


def backlog(client: redis.Redis, stream: str, group: str) -> int:
    """Entries ``group`` still has to finish: undelivered plus pending (delivered, not acked).

    Undelivered comes from ``XINFO GROUPS`` ``lag`` when Redis reports it as an integer and it can
    be trusted. When the stream's first entry lies past the group's last-delivered-id, every entry
    left is undelivered and ``XLEN`` is exact (Redis 7.0 over-counts ``lag`` after such a trim).
    When ``lag`` is nil (after deletions, or a group created at an arbitrary id) or exceeds ``XLEN``,
    the entries after last-delivered-id are counted with ``XRANGE``, a page at a time (O(backlog)).
    A missing stream has a backlog of 0. A missing group counts every entry in the stream, because
    ``ensure_group`` creates groups at id 0 and the group will have to read them all.
    """
    groups = _groups(client, stream)
    if groups is None:
        return 0
    info = next((g for g in groups if str(g["name"]) == group), None)
    if info is None:
        return int(client.xlen(stream))
    pending = int(info["pending"])
    last_delivered = str(info["last-delivered-id"])
    lag = info.get("lag")
    if isinstance(lag, int) and lag >= 0:
        length = int(client.xlen(stream))
        head = client.xrange(stream, "-", "+", count=1)
        if head and _id_key(str(head[0][0])) > _id_key(last_delivered):
            # Everything left is undelivered. (Trimming undelivered entries also makes Redis 7.0
            # over-count lag here, redis/redis#13957.)
            return length + pending
        if lag <= length:
            return lag + pending
    return _count_after(client, stream, last_delivered) + pending


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _next_id(entry_id: str) -> str:
    ms, seq = _id_key(entry_id)
    return f"{ms + 1}-0" if seq >= _MAX_SEQ else f"{ms}-{seq + 1}"


def _groups(client: redis.Redis, stream: str) -> list[dict[str, Any]] | None:
    """XINFO GROUPS, or None when the stream does not exist."""
    try:
        return client.xinfo_groups(stream)
    except ResponseError as exc:
        if "no such key" in str(exc):
            return None
        raise


def _count_after(client: redis.Redis, stream: str, last_id: str) -> int:
    """Entries with an id above ``last_id``, counted page by page."""
    count = 0
    start = f"({last_id}"
    while True:
        page = client.xrange(stream, start, "+", count=_RANGE_PAGE)
        if not page:
            return count
        count += len(page)
        if len(page) < _RANGE_PAGE:
            return count
        start = f"({page[-1][0]!s}"
