"""Keeping an entry's lease while it is handled, and backing off while Redis is away."""

from __future__ import annotations

import contextlib
import random
import threading

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["CONNECTION_ERRORS", "Backoff", "LeaseKeeper"]

#: Errors after which the consumer backs off and reconnects instead of crashing.
CONNECTION_ERRORS: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError)


class LeaseKeeper:
    """While an entry is in hand, a thread renews its lease every third of it: ``XCLAIM … JUSTID`` with
    no minimum idle time resets the idle time and leaves the delivery count as it is. With Redis itself
    down nobody can claim the entry either, so a failed renewal is simply tried again."""

    def __init__(
        self, client: redis.Redis, stream: str, group: str, consumer: str, entry_id: str, lease_ms: int
    ) -> None:
        self._claim = (client, stream, group, consumer)
        self._entry_id = entry_id
        self._lease_ms = lease_ms
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._renew, name=f"lease {entry_id}", daemon=True)

    def __enter__(self) -> None:
        self._thread.start()

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()

    def _renew(self) -> None:
        client, stream, group, consumer = self._claim
        while not self._done.wait(self._lease_ms / 3000):
            with contextlib.suppress(*CONNECTION_ERRORS):
                client.xclaim(stream, group, consumer, 0, [self._entry_id], justid=True)


class Backoff:
    """Exponential backoff from 0.1 s doubling to 5 s, with jitter (half fixed, half random)."""

    def __init__(self, first: float = 0.1, cap: float = 5.0) -> None:
        self.first = first
        self.cap = cap
        self.attempts = 0

    def next(self) -> float:
        delay = min(self.cap, self.first * 2.0**self.attempts)
        self.attempts += 1
        return delay / 2 + random.uniform(0, delay / 2)

    def reset(self) -> None:
        self.attempts = 0
