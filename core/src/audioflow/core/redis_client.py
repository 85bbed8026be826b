"""Every process's Redis client comes from here, with one decoding choice: replies are ``str``.

Everything audioflow keeps in Redis (work entries, events, marks) is text, so no caller has to handle
both ``bytes`` and ``str`` replies. The timeouts stay the caller's: a consumer's BLOCKing read needs a
longer socket timeout than a request's short commands.
"""

from __future__ import annotations

from typing import TypedDict

import redis
import redis.asyncio as aioredis


class _Options(TypedDict):
    decode_responses: bool
    socket_timeout: float | None
    socket_connect_timeout: float
    health_check_interval: int


def _options(
    socket_timeout: float | None, socket_connect_timeout: float, health_check_interval: int
) -> _Options:
    return {
        "decode_responses": True,
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": socket_connect_timeout,
        "health_check_interval": health_check_interval,
    }


def redis_client(
    url: str,
    *,
    socket_timeout: float | None,
    socket_connect_timeout: float = 2.0,
    health_check_interval: int = 15,
) -> redis.Redis:
    """A client that decodes replies; ``socket_timeout`` None waits without limit (a local tool)."""
    return redis.Redis.from_url(
        url, **_options(socket_timeout, socket_connect_timeout, health_check_interval)
    )


def async_redis_client(
    url: str,
    *,
    socket_timeout: float | None,
    socket_connect_timeout: float = 2.0,
    health_check_interval: int = 15,
    max_connections: int | None = None,
    client_name: str | None = None,
) -> aioredis.Redis:
    """The asyncio twin of :func:`redis_client`, decoding alike. With ``max_connections`` the pool is a
    blocking one: a caller past the limit waits up to 10 s for a connection instead of failing at once.
    ``client_name`` tells clients apart in ``CLIENT LIST``."""
    options = _options(socket_timeout, socket_connect_timeout, health_check_interval)
    if max_connections is None:
        return aioredis.Redis.from_url(url, client_name=client_name, **options)
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=10, client_name=client_name, **options
    )
    return aioredis.Redis(connection_pool=pool)
