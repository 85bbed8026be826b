"""audioflow.core.streams against a real Redis: delivery, reclaim, dead letters, trimming, backlog,
shutdown and outages."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from prometheus_client import REGISTRY
from redis.exceptions import ResponseError

from audioflow.core.errors import (
    AudioflowError,
    ChunkMissing,
    InvalidWav,
    RecordingCorrupt,
    StorageFull,
    is_permanent,
)
from audioflow.core.streams.consumer import Entry, Outcome, StreamConsumer, consumer_name
from audioflow.core.streams.queues import (
    backlog,
    dead_letter_stream,
    enqueue,
    ensure_group,
    trim_acknowledged,
)
from audioflow.core.streams.signals import install_signal_handlers
from tests import services

GROUP = "workers"


class Recorder:
    """A handler that records what it saw and answers with a fixed outcome (or raises)."""

    def __init__(self, outcome: Outcome = Outcome.ACK, *, error: Exception | None = None) -> None:
        self.outcome = outcome
        self.error = error
        self.entries: list[Entry] = []

    def __call__(self, entry: Entry) -> Outcome:
        self.entries.append(entry)
        if self.error is not None:
            raise self.error
        return self.outcome


def wait_until(predicate: Callable[[], object], timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


@contextlib.contextmanager
def running(consumer: StreamConsumer) -> Iterator[threading.Event]:
    stop = threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(15)
        assert not thread.is_alive(), "run() did not return after stop"


def make(
    client: redis.Redis, stream: str, handler: Callable[[Entry], Outcome], name: str, **kw: object
) -> StreamConsumer:
    options: dict[str, object] = {"block_ms": 100, "lease_ms": 60_000}
    options.update(kw)
    return StreamConsumer(client, stream, GROUP, handler, consumer=name, **options)  # type: ignore[arg-type]


def pending_ids(client: redis.Redis, stream: str, group: str = GROUP) -> list[str]:
    return [str(row["message_id"]) for row in client.xpending_range(stream, group, "-", "+", 100)]


def entries(client: redis.Redis, stream: str) -> list[tuple[str, dict[str, str]]]:
    return [(str(i), {str(k): str(v) for k, v in (f or {}).items()}) for i, f in client.xrange(stream) or []]


def ids_in(client: redis.Redis, stream: str) -> list[str]:
    return [i for i, _ in entries(client, stream)]


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# -- small pieces ---------------------------------------------------------------------------------


def test_consumer_name_is_unique_per_process() -> None:
    import os
    import socket

    assert consumer_name("concat") == f"concat-{socket.gethostname()}-{os.getpid()}"
    assert dead_letter_stream("af:concat") == "af:concat:dead"


def test_ensure_group_is_idempotent_and_other_errors_propagate(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    stream = redis_prefix + "s"
    ensure_group(redis_client, stream, GROUP)  # creates the stream too (MKSTREAM)
    enqueue(redis_client, stream, {"n": 1})
    ensure_group(redis_client, stream, GROUP)  # BUSYGROUP: ignored, position unchanged
    groups = redis_client.xinfo_groups(stream)
    assert [(g["name"], g["last-delivered-id"]) for g in groups] == [(GROUP, "0-0")]

    wrong = redis_prefix + "plain"
    redis_client.set(wrong, "x")
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        ensure_group(redis_client, wrong, GROUP)


def test_enqueue_step_handles_once_and_acks(redis_client: redis.Redis, redis_prefix: str) -> None:
    stream = redis_prefix + "s"
    ensure_group(redis_client, stream, GROUP)
    entry_id = enqueue(redis_client, stream, {"meeting_id": "m1", "seq": 3})
    handler = Recorder()
    consumer = make(redis_client, stream, handler, "a")

    assert consumer.step() == 1
    assert handler.entries == [Entry(entry_id, {"meeting_id": "m1", "seq": "3"}, 1)]
    assert pending_ids(redis_client, stream) == []
    assert consumer.step() == 0  # nothing new: the BLOCK read times out
    assert len(handler.entries) == 1
    assert metric("audioflow_stream_entries_total", stream=stream, group=GROUP, outcome="ack") == 1


def test_retry_stays_pending_and_is_reclaimed_after_the_lease(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    stream = redis_prefix + "s"
    ensure_group(redis_client, stream, GROUP)
    entry_id = enqueue(redis_client, stream, {"k": "v"})
    first = Recorder(Outcome.RETRY)
    a = make(redis_client, stream, first, "a", lease_ms=150)
    assert a.step() == 1
    assert pending_ids(redis_client, stream) == [entry_id]

    second = Recorder()
    b = make(redis_client, stream, second, "b", lease_ms=150)
    assert b.reclaim() == 0  # still inside the lease
    time.sleep(0.2)
    assert b.reclaim() == 1
    assert [(e.id, e.deliveries) for e in first.entries + second.entries] == [(entry_id, 1), (entry_id, 2)]
    assert pending_ids(redis_client, stream) == []
    assert metric("audioflow_stream_entries_total", stream=stream, group=GROUP, outcome="retry") == 1
    assert metric("audioflow_stream_reclaimed_total", stream=stream, group=GROUP) == 1


def test_dead_consumer_seam(redis_client: redis.Redis, redis_prefix: str) -> None:
    """Consumer A reads an entry and dies before acking; B reclaims it once it is idle past the lease,
    never while A could still be working on it."""
    stream = redis_prefix + "s"
    ensure_group(redis_client, stream, GROUP)
    entry_id = enqueue(redis_client, stream, {"meeting_id": "m", "seq": 0})
    # A "dies": it read the entry (now in its PEL) and never acks.
    redis_client.xreadgroup(GROUP, "a", {stream: ">"}, count=1)

    handler = Recorder()
    b = make(redis_client, stream, handler, "b", lease_ms=250)
    assert b.reclaim() == 0
    assert handler.entries == []
    assert redis_client.xpending_range(stream, GROUP, "-", "+", 10)[0]["consumer"] == "a"

    time.sleep(0.3)
    assert b.reclaim() == 1
    assert [(e.id, e.deliveries) for e in handler.entries] == [(entry_id, 2)]
    assert pending_ids(redis_client, stream) == []


def test_reclaim_follows_the_cursor(redis_client: redis.Redis, redis_prefix: str) -> None:
    stream = redis_prefix + "s"
    ensure_group(redis_client, stream, GROUP)
    ids = [enqueue(redis_client, stream, {"n": n}) for n in range(25)]
    redis_client.xreadgroup(GROUP, "dead", {stream: ">"}, count=25)
    time.sleep(0.12)
    handler = Recorder()
    b = make(redis_client, stream, handler, "b", lease_ms=100)
    assert b.reclaim() == 10  # a bounded batch per call ...
    assert b.reclaim() == 10  # ... continuing where the last one stopped
    assert b.reclaim() == 5
    assert [e.id for e in handler.entries] == ids
    assert pending_ids(redis_client, stream) == []


def test_failing_handler_is_dead_lettered_after_max_deliveries(
    redis_client: redis.Redis, redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    stream = redis_prefix + "s"
    ensure_group(redis_client, stream, GROUP)
    entry_id = enqueue(redis_client, stream, {"meeting_id": "m7", "seq": 4})
    handler = Recorder(error=RuntimeError("decoder exploded"))
    dead: list[tuple[Entry, str]] = []
    consumer = make(
        redis_client,
        stream,
        handler,
        "a",
        lease_ms=100,
        max_deliveries=3,
        on_dead_letter=lambda entry, reason: dead.append((entry, reason)),
    )
    caplog.set_level(logging.INFO, logger="audioflow.core.streams")

    assert consumer.step() == 1
    for _ in range(2):
        time.sleep(0.12)
        assert consumer.reclaim() == 1
    assert [e.deliveries for e in handler.entries] == [1, 2, 3]

    assert pending_ids(redis_client, stream) == []
    [(_, fields)] = entries(redis_client, dead_letter_stream(stream))
    assert fields == {
        "meeting_id": "m7",
        "seq": "4",
        "reason": "RuntimeError: decoder exploded",
        "original_id": entry_id,
        "deliveries": "3",
        "group": GROUP,
    }
    assert [(e.id, reason) for e, reason in dead] == [(entry_id, "RuntimeError: decoder exploded")]
    failures = [r for r in caplog.records if "handler failed" in r.getMessage()]
    assert len(failures) == 3 and entry_id in failures[0].getMessage()
    assert getattr(failures[0], "meeting_id", None) == "m7" and getattr(failures[0], "seq", None) == 4
    assert all(r.exc_info is None for r in failures)  # one line each; the traceback only at debug
    assert metric("audioflow_stream_entries_total", stream=stream, group=GROUP, outcome="error") == 3
    assert metric("audioflow_stream_entries_total", stream=stream, group=GROUP, outcome="dead_letter") == 1

    time.sleep(0.12)
    assert consumer.reclaim() == 0  # nothing left to redeliver


@pytest.mark.parametrize(
    "error",
    [InvalidWav("stored chunk is not a WAV"), ChunkMissing("chunk file is missing"), RecordingCorrupt("x")],
)
def test_a_permanent_error_is_dead_lettered_on_its_first_delivery(
    redis_client: redis.Redis, redis_prefix: str, error: AudioflowError
) -> None:
    # The stored data itself is bad: four more deliveries would fail the same way, only later.
    stream = redis_prefix + "s"
    ensure_group(redis_client, stream, GROUP)
    entry_id = enqueue(redis_client, stream, {"meeting_id": "m", "seq": 1})
    dead: list[str] = []
    consumer = make(
        redis_client,
        stream,
        Recorder(error=error),
        "a",
        max_deliveries=5,
        on_dead_letter=lambda e, r: dead.append(r),
    )
    assert consumer.step() == 1
    assert pending_ids(redis_client, stream) == []
    [(_, fields)] = entries(redis_client, dead_letter_stream(stream))
    assert (fields["original_id"], fields["deliveries"]) == (entry_id, "1")
    assert dead == [f"{type(error).__name__}: {error}"]


def test_an_error_that_is_not_permanent_is_retried() -> None:
    assert not is_permanent(RuntimeError("decoder exploded"))
    assert not is_permanent(StorageFull("disk full"))
    assert not is_permanent(None)


class DatabaseDown(Exception):
    """Stands for the database being unreachable (the workers pass SQLAlchemy's OperationalError)."""


def test_an_outage_is_waited_out_holding_the_entry_never_counted_against_it(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    stream = redis_prefix + "s"
    ensure_group(redis_client, stream, GROUP)
    entry_id = enqueue(redis_client, stream, {"k": "v"})
    calls: list[float] = []

    def handler(entry: Entry) -> Outcome:
        calls.append(time.monotonic())
        if len(calls) <= 6:  # down for six attempts, with backoff in between: longer than the lease
            raise DatabaseDown("connection refused")
        return Outcome.ACK

    holder = make(
        redis_client,
        stream,
        handler,
        "holder",
        lease_ms=200,
        max_deliveries=1,
        transient=lambda exc: isinstance(exc, DatabaseDown),
    )
    peer = make(redis_client, stream, Recorder(), "peer", lease_ms=200, max_deliveries=1)
    stop = threading.Event()
    thread = threading.Thread(target=holder.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_until(lambda: len(calls) >= 2, what="the outage to begin")
        stolen = 0
        while len(calls) <= 6:  # the peer tries to take the entry throughout the outage
            stolen += peer.reclaim()
            time.sleep(0.05)
        wait_until(lambda: pending_ids(redis_client, stream) == [], what="the entry to be acked")
    finally:
        stop.set()
        thread.join(15)
    assert calls[-1] - calls[0] > 0.2, "the outage did not outlast the lease"
    assert stolen == 0, "a peer took the entry while its holder waited out the outage"
    assert ids_in(redis_client, dead_letter_stream(stream)) == []
    assert len(calls) == 7 and pending_ids(redis_client, stream) == []
    assert entry_id not in ids_in(redis_client, dead_letter_stream(stream))


def test_a_transient_failure_on_stop_leaves_the_entry_pending(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    stream = redis_prefix + "s"
    ensure_group(redis_client, stream, GROUP)
    entry_id = enqueue(redis_client, stream, {"k": "v"})
    consumer = make(
        redis_client,
        stream,
        Recorder(error=DatabaseDown("down")),
        "a",
        max_deliveries=1,
        transient=lambda exc: isinstance(exc, DatabaseDown),
    )
    with running(consumer) as stop:
        wait_until(lambda: pending_ids(redis_client, stream) == [entry_id], what="the entry to be held")
        stop.set()
    assert pending_ids(redis_client, stream) == [entry_id]
    assert ids_in(redis_client, dead_letter_stream(stream)) == []


def test_retrying_forever_ends_in_the_dead_letter_stream(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    stream = redis_prefix + "s"
    ensure_group(redis_client, stream, GROUP)
    entry_id = enqueue(redis_client, stream, {"k": "v"})
    handler = Recorder(Outcome.RETRY)
    consumer = make(redis_client, stream, handler, "a", lease_ms=50, max_deliveries=2)
    consumer.step()
    time.sleep(0.07)
    consumer.reclaim()
    time.sleep(0.07)
    assert consumer.reclaim() == 1  # third delivery: over the ceiling, the handler is not called
    assert len(handler.entries) == 2
    [(_, fields)] = entries(redis_client, dead_letter_stream(stream))
    assert fields["original_id"] == entry_id and fields["deliveries"] == "3"
    assert "max_deliveries=2" in fields["reason"]
    assert pending_ids(redis_client, stream) == []


def test_entry_deleted_while_pending_leaves_the_pel(
    redis_client: redis.Redis, redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    stream = redis_prefix + "s"
    ensure_group(redis_client, stream, GROUP)
    gone = enqueue(redis_client, stream, {"n": 1})
    kept = enqueue(redis_client, stream, {"n": 2})
    redis_client.xreadgroup(GROUP, "dead", {stream: ">"}, count=2)
    redis_client.xdel(stream, gone)
    time.sleep(0.12)
    handler = Recorder()
    consumer = make(redis_client, stream, handler, "b", lease_ms=100)
    caplog.set_level(logging.WARNING, logger="audioflow.core.streams")

    assert consumer.reclaim() == 1
    assert [e.id for e in handler.entries] == [kept]
    assert consumer.deleted_while_pending == 1
    assert any(gone in r.getMessage() and "deleted while pending" in r.getMessage() for r in caplog.records)
    assert pending_ids(redis_client, stream) == []


# -- run(): replay, shutdown, outages -------------------------------------------------------------


def test_run_replays_own_pending_entries_first(redis_client: redis.Redis, redis_prefix: str) -> None:
    stream = redis_prefix + "s"
    ensure_group(redis_client, stream, GROUP)
    held = enqueue(redis_client, stream, {"n": 1})
    deleted = enqueue(redis_client, stream, {"n": 2})
    # The previous process under this name read both and was killed before acking.
    redis_client.xreadgroup(GROUP, "concat-host-1", {stream: ">"}, count=2)
    redis_client.xdel(stream, deleted)
    fresh = enqueue(redis_client, stream, {"n": 3})

    handler = Recorder()
    consumer = make(redis_client, stream, handler, "concat-host-1")  # lease 60 s: no reclaim involved
    with running(consumer):
        wait_until(lambda: len(handler.entries) == 2, what="both entries")
    assert [(e.id, e.deliveries) for e in handler.entries] == [(held, 2), (fresh, 1)]
    assert consumer.deleted_while_pending == 1
    assert pending_ids(redis_client, stream) == []


def test_stop_mid_entry_finishes_and_acks_it(redis_client: redis.Redis, redis_prefix: str) -> None:
    stream = redis_prefix + "s"
    inside, release = threading.Event(), threading.Event()
    seen: list[str] = []

    def slow(entry: Entry) -> Outcome:
        seen.append(entry.id)
        inside.set()
        release.wait(5)
        return Outcome.ACK

    consumer = make(redis_client, stream, slow, "a")
    stop = threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
    thread.start()
    wait_until(lambda: redis_client.exists(stream), what="the group")  # run() created it
    entry_id = enqueue(redis_client, stream, {"n": 1})
    enqueue(redis_client, stream, {"n": 2})
    assert inside.wait(5)
    stop.set()
    time.sleep(0.1)
    assert thread.is_alive()  # still finishing the entry in hand
    release.set()
    thread.join(5)
    assert not thread.is_alive()
    assert seen == [entry_id]  # nothing new was read after stop
    assert pending_ids(redis_client, stream) == []
    assert backlog(redis_client, stream, GROUP) == 1


def test_an_ack_lost_to_an_outage_is_sent_later(
    redis_client: redis.Redis, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = redis_prefix + "s"
    real_xack = redis_client.xack
    failures = [redis.ConnectionError("connection reset")]

    def flaky_xack(*args: object) -> object:
        if failures:
            raise failures.pop()
        return real_xack(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(redis_client, "xack", flaky_xack)
    handler = Recorder()
    consumer = make(redis_client, stream, handler, "a")
    with running(consumer):
        wait_until(lambda: redis_client.exists(stream), what="the group")
        entry_id = enqueue(redis_client, stream, {"n": 1})
        wait_until(lambda: not failures, what="the failed XACK")
        wait_until(lambda: pending_ids(redis_client, stream) == [], what="the deferred XACK")
    assert [e.id for e in handler.entries] == [entry_id]  # acked later, not handled twice


def test_after_an_outage_the_consumer_handles_what_it_held_again_at_once(
    redis_client: redis.Redis, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An entry this consumer held when Redis went away (here: one it asked to retry) is handled again
    as soon as Redis answers, not a lease (60 s here) later by a reclaim."""
    stream = redis_prefix + "s"
    outcomes = [Outcome.RETRY, Outcome.ACK]
    seen: list[Entry] = []

    def handler(entry: Entry) -> Outcome:
        seen.append(entry)
        return outcomes.pop(0)

    real_xreadgroup = redis_client.xreadgroup
    outage = threading.Event()

    def flaky_xreadgroup(*args: object, **kwargs: object) -> object:
        if outage.is_set():
            outage.clear()
            raise redis.ConnectionError("connection reset")
        return real_xreadgroup(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(redis_client, "xreadgroup", flaky_xreadgroup)
    consumer = make(redis_client, stream, handler, "a")
    with running(consumer):
        wait_until(lambda: redis_client.exists(stream), what="the group")
        entry_id = enqueue(redis_client, stream, {"n": 1})
        wait_until(lambda: len(seen) == 1, what="the first delivery")
        outage.set()
        wait_until(lambda: len(seen) == 2, what="the entry handled again after the outage")
        wait_until(lambda: pending_ids(redis_client, stream) == [], what="its ack")
    assert [(e.id, e.deliveries) for e in seen] == [(entry_id, 1), (entry_id, 2)]


def test_run_recreates_a_vanished_group(redis_client: redis.Redis, redis_prefix: str) -> None:
    stream = redis_prefix + "s"
    handler = Recorder()
    consumer = make(redis_client, stream, handler, "a")
    with running(consumer):
        wait_until(lambda: redis_client.exists(stream), what="the group")
        redis_client.delete(stream)  # e.g. someone flushed Redis
        entry_id = enqueue(redis_client, stream, {"n": 1})
        wait_until(lambda: len(handler.entries) == 1, what="the entry")
    assert handler.entries[0].id == entry_id
    assert pending_ids(redis_client, stream) == []


def test_step_trims_finished_entries_on_its_interval(redis_client: redis.Redis, redis_prefix: str) -> None:
    stream = redis_prefix + "s"
    ensure_group(redis_client, stream, GROUP)
    ids = [enqueue(redis_client, stream, {"n": n}) for n in range(3)]
    consumer = make(redis_client, stream, Recorder(), "a", trim_interval_s=0.0)
    assert consumer.step() == 1  # trims (nothing finished yet), then handles ids[0]
    assert consumer.step() == 1  # trims ids[0], then handles ids[1]
    assert ids_in(redis_client, stream) == ids[1:]


@pytest.mark.timeout(90)
def test_consumer_survives_a_redis_restart(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    port = services.free_port()
    proc = services.start_redis(port, tmp_path)
    client = redis.Redis(port=port, decode_responses=True)
    producer = redis.Redis(port=port, decode_responses=True)
    stream = "af:restart"
    handler = Recorder()
    consumer = make(client, stream, handler, "a", claim_interval_s=0.2)
    caplog.set_level(logging.WARNING, logger="audioflow.core.streams")
    try:
        with running(consumer):
            wait_until(lambda: client.exists(stream), what="the group")
            enqueue(producer, stream, {"n": 1})
            wait_until(lambda: len(handler.entries) == 1, what="the first entry")

            proc.kill()
            proc.wait()

            def outage() -> list[logging.LogRecord]:
                return [r for r in caplog.records if "redis unreachable" in r.getMessage()]

            wait_until(outage, timeout=20, what="the consumer to notice the outage")
            time.sleep(0.5)
            proc = services.start_redis(port, tmp_path)  # no persistence: stream and group are gone

            enqueue(producer, stream, {"n": 2})
            wait_until(lambda: len(handler.entries) == 2, timeout=20, what="an entry after the restart")
            assert handler.entries[1].fields == {"n": "2"}
            wait_until(lambda: pending_ids(producer, stream) == [], what="the ack")
            # Backed off, not busy-spinning: a handful of warnings, not hundreds.
            assert 1 <= len(outage()) <= 10
    finally:
        client.close()
        producer.close()
        proc.kill()
        proc.wait()


def test_signal_handlers_set_stop_then_exit() -> None:
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    stop = threading.Event()
    try:
        install_signal_handlers(stop)
        signal.raise_signal(signal.SIGTERM)
        assert stop.is_set()
        with pytest.raises(SystemExit):
            signal.raise_signal(signal.SIGINT)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# -- trimming and backlog -------------------------------------------------------------------------


def test_trim_removes_only_what_every_group_finished(redis_client: redis.Redis, redis_prefix: str) -> None:
    stream = redis_prefix + "s"
    assert trim_acknowledged(redis_client, stream) == 0  # no stream
    ids = [enqueue(redis_client, stream, {"n": n}) for n in range(6)]
    assert trim_acknowledged(redis_client, stream) == 0  # no groups: left alone
    ensure_group(redis_client, stream, "slow")
    ensure_group(redis_client, stream, "fast")

    # slow: read 0..2, acked 0 and 2, 1 still pending; fast: read and acked 0..4.
    redis_client.xreadgroup("slow", "s1", {stream: ">"}, count=3)
    redis_client.xack(stream, "slow", ids[0], ids[2])
    redis_client.xreadgroup("fast", "f1", {stream: ">"}, count=5)
    redis_client.xack(stream, "fast", *ids[:5])

    assert trim_acknowledged(redis_client, stream) == 1  # only 0: 1 is pending for slow
    assert ids_in(redis_client, stream) == ids[1:]

    redis_client.xack(stream, "slow", ids[1])
    assert trim_acknowledged(redis_client, stream) == 2  # 1 and 2; 3.. never delivered to slow
    assert ids_in(redis_client, stream) == ids[3:]

    redis_client.xreadgroup("slow", "s1", {stream: ">"}, count=3)  # 3, 4, 5 pending for slow
    redis_client.xack(stream, "slow", *ids[3:])
    assert trim_acknowledged(redis_client, stream) == 2  # 3 and 4; 5 is undelivered for fast
    assert ids_in(redis_client, stream) == ids[5:]
    assert backlog(redis_client, stream, "fast") == 1
    assert backlog(redis_client, stream, "slow") == 0


def test_backlog_uses_lag_and_falls_back_when_it_is_nil(redis_client: redis.Redis, redis_prefix: str) -> None:
    stream = redis_prefix + "s"
    assert backlog(redis_client, stream, GROUP) == 0  # missing stream
    ids = [enqueue(redis_client, stream, {"n": n}) for n in range(6)]
    assert backlog(redis_client, stream, GROUP) == 6  # missing group: everything is still to do
    ensure_group(redis_client, stream, GROUP)
    redis_client.xreadgroup(GROUP, "c", {stream: ">"}, count=2)
    redis_client.xack(stream, GROUP, ids[0])

    [info] = redis_client.xinfo_groups(stream)
    assert (info["lag"], info["pending"]) == (4, 1)
    assert backlog(redis_client, stream, GROUP) == 5  # 4 undelivered + 1 pending

    redis_client.xdel(stream, ids[3])  # an undelivered entry: Redis can no longer compute lag
    [info] = redis_client.xinfo_groups(stream)
    assert info["lag"] is None
    assert backlog(redis_client, stream, GROUP) == 4  # 3 undelivered (counted) + 1 pending


def test_backlog_does_not_trust_an_overcounted_lag(redis_client: redis.Redis, redis_prefix: str) -> None:
    """Redis 7.0 over-counts lag after XTRIM removed undelivered entries (redis/redis#13957)."""
    stream = redis_prefix + "s"
    ensure_group(redis_client, stream, GROUP)
    for n in range(6):
        enqueue(redis_client, stream, {"n": n})
    redis_client.xreadgroup(GROUP, "c", {stream: ">"}, count=1)
    redis_client.xtrim(stream, maxlen=2, approximate=False)  # drops 3 undelivered entries
    [info] = redis_client.xinfo_groups(stream)
    assert info["lag"] in (2, 5)  # 5 on Redis 7.0.x (the bug), 2 where it is fixed
    assert backlog(redis_client, stream, GROUP) == 2 + 1  # 2 undelivered + 1 pending


def test_a_decode_longer_than_the_lease_keeps_its_entry(redis_client: redis.Redis, redis_prefix: str) -> None:
    """A chunk that takes longer than the lease (a long decode) is not reclaimed by a peer meanwhile:
    the holder renews its lease while the handler runs, and the delivery count stays 1."""
    stream = redis_prefix + "s"
    ensure_group(redis_client, stream, GROUP)
    enqueue(redis_client, stream, {"k": "v"})
    started, release = threading.Event(), threading.Event()

    def slow(entry: Entry) -> Outcome:
        started.set()
        release.wait(10)
        return Outcome.ACK

    holder = make(redis_client, stream, slow, "holder", lease_ms=200, max_deliveries=1)
    peer = make(redis_client, stream, Recorder(), "peer", lease_ms=200, max_deliveries=1)
    stop = threading.Event()
    thread = threading.Thread(target=holder.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert started.wait(10)
        stolen = 0
        deadline = time.monotonic() + 1.5  # seven leases
        while time.monotonic() < deadline:
            stolen += peer.reclaim()
            time.sleep(0.05)
        release.set()
        wait_until(lambda: pending_ids(redis_client, stream) == [], what="the entry to be acked")
    finally:
        release.set()
        stop.set()
        thread.join(15)
    assert stolen == 0, "a peer took the entry while its holder was still working on it"
    assert ids_in(redis_client, dead_letter_stream(stream)) == []
