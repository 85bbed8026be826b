"""Every process's Redis client comes from here, with one decoding choice: replies are ``str``.

Everything audioflow keeps in Redis (work entries, events, marks) is text, so no caller has to handle
both ``bytes`` and ``str`` replies. The timeouts stay the caller's: a consumer's BLOCKing read needs a
longer socket timeout than a request's short commands.
"""

from __future__ import annotations

import redis


def redis_client(
    url: str,
    *,
    socket_timeout: float | None,
    socket_connect_timeout: float = 2.0,
    health_check_interval: int = 15,
) -> redis.Redis:
    """A client that decodes replies; ``socket_timeout`` None waits without limit (a local tool)."""
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_connect_timeout,
        health_check_interval=health_check_interval,
    )
