"""The consumer loop: at-least-once delivery of one stream's entries through a consumer group.

A worker runs one ``StreamConsumer`` per stream. The consumer reads with a BLOCKing ``XREADGROUP``,
calls a handler that knows nothing about Redis, and ``XACK``s only after the handler returned
``Outcome.ACK`` (the handler commits its database work before it returns). Entries that stay pending
longer than the lease (a crashed peer, or a ``RETRY``) are taken over with ``XAUTOCLAIM`` and handled
through the same path; after ``max_deliveries`` an entry moves to the stream's dead-letter stream, at
once when the handler's error is ``permanent`` (the stored data itself is bad: retrying cannot help).
Handlers must be idempotent: an entry can be handled more than once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis
from redis.exceptions import ResponseError

from audioflow.core.errors import is_permanent
from audioflow.core.metrics import STREAM_ENTRIES, STREAM_HANDLE_SECONDS, STREAM_RECLAIMED, WORKER_BUSY
from audioflow.core.streams.entries import (
    Entry,
    Handler,
    Outcome,
    consumer_name,
    fields_of,
    log_context,
    stream_entries,
)
from audioflow.core.streams.leases import CONNECTION_ERRORS, Backoff, LeaseKeeper
from audioflow.core.streams.queues import ensure_group, move_to_dead_letter, trim_acknowledged

__all__ = ["CONNECTION_ERRORS", "Entry", "Handler", "Outcome", "StreamConsumer", "consumer_name"]

log = logging.getLogger(__name__)

#: XAUTOCLAIM calls (COUNT 1 each, following the cursor) per reclaim(): claim just before handling,
#: so that a claimed entry never waits behind others long enough to look idle again.
_CLAIMS_PER_RECLAIM = 10


class StreamConsumer:
    """One consumer of one group on one stream; see the module docstring for the delivery rules.

    ``run(stop)`` is the process loop. ``step()`` and ``reclaim()`` are its parts, public for tests.
    Not thread-safe: one consumer per thread (``stop`` may be set from any thread).
    """

    def __init__(
        self,
        client: redis.Redis,
        stream: str,
        group: str,
        handler: Handler,
        *,
        consumer: str,
        lease_ms: int = 60_000,
        max_deliveries: int = 5,
        block_ms: int = 2_000,
        claim_interval_s: float = 5.0,
        trim_interval_s: float = 30.0,
        on_dead_letter: Callable[[Entry, str], None] | None = None,  # idempotent; see _dead_letter
        transient: Callable[[Exception], bool] = lambda exc: isinstance(exc, CONNECTION_ERRORS),
        logger: logging.Logger | None = None,
    ) -> None:
        if lease_ms <= 0:
            raise ValueError("lease_ms must be positive")
        if max_deliveries < 1:
            raise ValueError("max_deliveries must be at least 1")
        if block_ms <= 0:
            raise ValueError("block_ms must be positive (0 would block forever)")
        options = getattr(client.connection_pool, "connection_kwargs", {})
        if not options.get("decode_responses"):
            raise ValueError("the client must decode replies (see audioflow.core.redis_client)")
        socket_timeout = options.get("socket_timeout")
        if socket_timeout is not None and block_ms / 1000 >= float(socket_timeout):
            raise ValueError(
                f"block_ms={block_ms} must be shorter than the client's socket_timeout={socket_timeout} s"
            )
        self.client = client
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.handler = handler
        self.lease_ms = lease_ms
        self.max_deliveries = max_deliveries
        self.block_ms = block_ms
        self.claim_interval_s = claim_interval_s
        self.trim_interval_s = trim_interval_s
        self.on_dead_letter = on_dead_letter
        self.transient = transient  # a dependency is down: hold the entry and retry, see _call
        self.log = logger or log
        #: Entries found deleted while pending (XAUTOCLAIM's third reply element, or an empty
        #: history read); they are dropped from the PEL and never reach the handler.
        self.deleted_while_pending = 0
        self._claim_cursor = "0-0"
        self._next_claim = 0.0  # the first step reclaims at once: a dead peer's work is not left waiting
        self._next_trim = time.monotonic() + trim_interval_s
        self._unacked: list[str] = []  # handled and committed, XACK lost to a connection error
        self._stop: threading.Event | None = None
        self._busy = WORKER_BUSY.labels(component=group)
        self._seconds = STREAM_HANDLE_SECONDS.labels(stream=stream, group=group)
        self._reclaimed = STREAM_RECLAIMED.labels(stream=stream, group=group)

    # -- the loop ---------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Create the group, re-handle this consumer's own pending entries, then ``step()`` until
        ``stop`` is set; the entry in hand is finished and acked before returning. Redis outages
        are logged and waited out with exponential backoff; they never end the loop."""
        self._stop = stop
        backoff = Backoff()
        need_group = True
        replayed = False
        self.log.info("consuming %s as %s/%s", self.stream, self.group, self.consumer)
        while not stop.is_set():
            try:
                if need_group:
                    ensure_group(self.client, self.stream, self.group)
                    need_group = False
                if not replayed:
                    self._replay_own_pending()
                    replayed = True
                    continue
                self.step()
                backoff.reset()
            except CONNECTION_ERRORS as exc:
                delay = backoff.next()
                self.log.warning(
                    "redis unreachable while consuming %s (%s: %s); retrying in %.2f s",
                    self.stream,
                    type(exc).__name__,
                    exc,
                    delay,
                )
                stop.wait(delay)
                self._reconnect()
                need_group = True  # a Redis restarted without persistence has lost stream and group
                # What this consumer held when Redis went away is handled again at once, not one lease
                # later by a reclaim (its deferred acks are sent first, so nothing acked is redone).
                replayed = False
            except ResponseError as exc:
                # NOGROUP: the stream or group is gone. UNBLOCKED: Redis 7 ends a blocked XREADGROUP
                # with "UNBLOCKED the stream key no longer exists" when the key is deleted.
                if not str(exc).startswith(("NOGROUP", "UNBLOCKED")):
                    raise
                delay = backoff.next()
                self.log.warning(
                    "group %s on %s vanished (%s); recreating it", self.group, self.stream, str(exc)[:80]
                )
                stop.wait(delay)
                need_group = True
        self._finish()
        self.log.info("stopped consuming %s as %s/%s", self.stream, self.group, self.consumer)

    def step(self) -> int:
        """One cycle: reclaim and/or trim when their interval has elapsed; when reclaiming handled
        nothing, one ``XREADGROUP >`` (COUNT 1, BLOCK block_ms). Returns the entries handled."""
        self._flush_acks()
        now = time.monotonic()
        handled = 0
        if now >= self._next_claim:
            self._next_claim = now + self.claim_interval_s
            handled += self.reclaim()
        if now >= self._next_trim:
            self._next_trim = now + self.trim_interval_s
            removed = trim_acknowledged(self.client, self.stream)
            if removed:
                self.log.debug("trimmed %d finished entries from %s", removed, self.stream)
        if handled or self._stopping():
            return handled
        reply = self.client.xreadgroup(
            self.group, self.consumer, {self.stream: ">"}, count=1, block=self.block_ms
        )
        for entry_id, fields in stream_entries(reply):
            self._handle(Entry(entry_id, fields, 1))
            handled += 1
        return handled

    def reclaim(self) -> int:
        """Take over entries pending longer than the lease (XAUTOCLAIM, following its cursor across
        calls) and handle them; an entry delivered more than max_deliveries times is dead-lettered
        instead. Entries deleted while pending are counted and logged. Returns entries handled."""
        handled = 0
        for _ in range(_CLAIMS_PER_RECLAIM):
            reply = self.client.xautoclaim(
                self.stream, self.group, self.consumer, self.lease_ms, start_id=self._claim_cursor, count=1
            )
            self._claim_cursor = str(reply[0])  # "0-0" when the scan is complete: start over next time
            deleted = [str(i) for i in reply[2]] if len(reply) > 2 else []
            for raw_id, raw_fields in reply[1]:
                entry_id = str(raw_id)
                if raw_fields is None:  # Redis 6.2 returns deleted entries as nil and keeps them
                    self.client.xack(self.stream, self.group, entry_id)
                    deleted.append(entry_id)
                    continue
                self._reclaimed.inc()
                deliveries = self._deliveries(entry_id)
                if deliveries is None:  # acknowledged meanwhile
                    continue
                self._process(Entry(entry_id, fields_of(raw_fields), deliveries))
                handled += 1
            if deleted:
                self._note_deleted(deleted)
            if self._claim_cursor == "0-0" or self._stopping():
                break
        return handled

    # -- one entry --------------------------------------------------------------------------------

    def _process(self, entry: Entry) -> None:
        """Replayed or reclaimed entries: dead-letter when over the delivery ceiling, else handle."""
        if entry.deliveries > self.max_deliveries:
            self._dead_letter(
                entry, f"delivered {entry.deliveries} times, more than max_deliveries={self.max_deliveries}"
            )
        else:
            self._handle(entry)

    def _handle(self, entry: Entry) -> None:
        """Call the handler once and act on what it answered (the one path for every delivery)."""
        context = log_context(entry)
        outcome: Outcome | None = None
        error: Exception | None = None
        self._busy.set(1)
        started = time.perf_counter()
        try:
            outcome = self._call(entry)
            if not isinstance(outcome, Outcome):
                raise TypeError(f"handler returned {outcome!r}, not an Outcome")
        except Exception as exc:
            error = exc
        finally:
            self._seconds.observe(time.perf_counter() - started)
            self._busy.set(0)

        if error is not None or outcome is None:
            self._count("error")
            self.log.warning(
                "handler failed on %s entry %s %s (delivery %d of %d): %s: %s",
                self.stream,
                entry.id,
                entry.fields,
                entry.deliveries,
                self.max_deliveries,
                type(error).__name__,
                error,
                extra=context,
            )
            self.log.debug("traceback for %s entry %s", self.stream, entry.id, exc_info=error, extra=context)
            if entry.deliveries >= self.max_deliveries or is_permanent(error):
                self._dead_letter(entry, f"{type(error).__name__}: {error}"[:1000])
        elif outcome is Outcome.ACK:
            self._ack(entry.id)
            self._count("ack")
        else:
            self._count("retry")
            self.log.info(
                "%s entry %s left pending for a retry (delivery %d of %d)",
                self.stream,
                entry.id,
                entry.deliveries,
                self.max_deliveries,
                extra=context,
            )

    def _call(self, entry: Entry) -> Outcome:
        """The handler, retried in place while it fails for a ``transient`` reason (the database or Redis
        is down). All the while the entry's lease is renewed without counting a delivery (see
        :class:`~audioflow.core.streams.leases.LeaseKeeper`), so no peer takes it: not during a decode longer
        than the lease, and not
        during an outage, however long, which never walks it toward the dead-letter stream; only
        failures of the entry itself count. On stop the entry is left pending for later."""
        with LeaseKeeper(self.client, self.stream, self.group, self.consumer, entry.id, self.lease_ms):
            return self._call_until_done(entry)

    def _call_until_done(self, entry: Entry) -> Outcome:
        backoff = Backoff(cap=min(5.0, self.lease_ms / 2000))
        while True:
            try:
                return self.handler(entry)
            except Exception as exc:
                if not self.transient(exc):
                    raise
                if self._stopping():
                    return Outcome.RETRY
                delay = backoff.next()
                self.log.warning(
                    "a dependency is unavailable while handling %s entry %s (%s: %s); holding it, "
                    "retrying in %.2f s",
                    self.stream,
                    entry.id,
                    type(exc).__name__,
                    str(exc).splitlines()[0][:200] if str(exc) else "",
                    delay,
                    extra=log_context(entry),
                )
                if self._stop is not None:
                    self._stop.wait(delay)
                else:
                    time.sleep(delay)

    def _ack(self, entry_id: str) -> None:
        try:
            self.client.xack(self.stream, self.group, entry_id)
        except CONNECTION_ERRORS:
            self._unacked.append(entry_id)  # the work is committed: ack it when Redis is back
            raise

    def _flush_acks(self) -> None:
        if self._unacked:
            self.client.xack(self.stream, self.group, *self._unacked)
            self._unacked.clear()

    def _dead_letter(self, entry: Entry, reason: str) -> None:
        # The callback runs before the entry leaves the stream: a process killed in between gets the
        # entry back, dead-letters it again and calls the callback again (callbacks are idempotent),
        # so what the callback records is never lost.
        if self.on_dead_letter is not None:
            try:
                self.on_dead_letter(entry, reason)
            except Exception as exc:
                self.log.warning("on_dead_letter failed for %s: %s: %s", entry.id, type(exc).__name__, exc)
                self.log.debug("on_dead_letter traceback", exc_info=True)
        where = move_to_dead_letter(self.client, self.stream, self.group, entry, reason)
        self._count("dead_letter")
        context = log_context(entry)
        message = "%s entry %s moved to %s after %d deliveries: %s"
        self.log.warning(message, self.stream, entry.id, where, entry.deliveries, reason, extra=context)

    # -- helpers ----------------------------------------------------------------------------------

    def _replay_own_pending(self) -> int:
        """Re-handle what this consumer name held when it last stopped, or when Redis went away
        (XREADGROUP from id 0), after sending the acks an outage deferred."""
        self._flush_acks()
        handled = 0
        last = "0"
        while not self._stopping():
            reply = self.client.xreadgroup(self.group, self.consumer, {self.stream: last}, count=1)
            entries = stream_entries(reply)
            if not entries:
                break
            for entry_id, fields in entries:
                last = entry_id
                if not fields:  # deleted while pending: a history read returns it without fields
                    self.client.xack(self.stream, self.group, entry_id)
                    self._note_deleted([entry_id])
                    continue
                deliveries = self._deliveries(entry_id)
                if deliveries is None:
                    continue
                self._process(Entry(entry_id, fields, deliveries))
                handled += 1
        if handled:
            self.log.info("re-handled %d entries %s held before a restart", handled, self.consumer)
        return handled

    def _deliveries(self, entry_id: str) -> int | None:
        rows = self.client.xpending_range(self.stream, self.group, entry_id, entry_id, 1)
        return int(rows[0]["times_delivered"]) if rows else None

    def _note_deleted(self, ids: list[str]) -> None:
        self.deleted_while_pending += len(ids)
        self.log.warning(
            "%d %s entries were deleted while pending and left the PEL: %s",
            len(ids),
            self.stream,
            ", ".join(ids),
        )

    def _count(self, outcome: str) -> None:
        STREAM_ENTRIES.labels(stream=self.stream, group=self.group, outcome=outcome).inc()

    def _stopping(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    def _reconnect(self) -> None:
        """Drop idle pooled connections (redis-py already dropped the one that failed); the next
        command connects afresh. Connections other threads are using are left alone."""
        try:
            self.client.connection_pool.disconnect(inuse_connections=False)
        except Exception as exc:  # best effort
            self.log.debug("disconnecting the pool failed: %s", exc)

    def _finish(self) -> None:
        """On stop: acknowledge work whose XACK was lost to an outage (bounded attempts)."""
        backoff = Backoff()
        for _ in range(3):
            try:
                self._flush_acks()
                return
            except CONNECTION_ERRORS:
                time.sleep(backoff.next())
        self.log.warning(
            "could not acknowledge %d finished entries (%s); they will be redelivered",
            len(self._unacked),
            ", ".join(self._unacked),
        )
