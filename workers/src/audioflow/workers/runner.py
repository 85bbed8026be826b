"""Process entry points for the workers: build clients once, then consume until SIGTERM."""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import Literal

from audioflow.core.db.engine import UNAVAILABLE_ERRORS, make_engine, make_sessionmaker
from audioflow.core.keys import CONCAT_GROUP, PROCESSING_GROUP, Keys
from audioflow.core.logs import MeetingLogForwarder, setup_logging
from audioflow.core.metrics import serve_metrics
from audioflow.core.redis_client import redis_client
from audioflow.core.settings import Settings
from audioflow.core.storage import LocalStorage
from audioflow.core.streams.consumer import CONNECTION_ERRORS, StreamConsumer, consumer_name
from audioflow.core.streams.signals import install_signal_handlers
from audioflow.workers import concat, processing, reconcile
from audioflow.workers.publisher import Publisher

log = logging.getLogger("audioflow.workers")

Kind = Literal["processing", "concat"]


def _unavailable(exc: Exception) -> bool:
    """The database or Redis is down: wait it out (an outage is nobody's fault, and never the entry's)."""
    return isinstance(exc, (*UNAVAILABLE_ERRORS, *CONNECTION_ERRORS))


def _periodically(what: str, interval: float, step: Callable[[], object], stop: threading.Event) -> None:
    """Run ``step`` every ``interval`` seconds in a thread of its own until ``stop``."""

    def loop() -> None:
        while not stop.wait(interval):
            try:
                step()
            except Exception as exc:
                if not _unavailable(exc):
                    log.exception("%s failed; retrying in %.1f s", what, interval)
                    continue
                first_line = str(exc).splitlines()[0] if str(exc) else ""
                log.warning("%s: %s: %s; retrying in %.1f s", what, type(exc).__name__, first_line, interval)

    threading.Thread(target=loop, name=what.replace(" ", "-"), daemon=True).start()


def run_worker(kind: Kind, settings: Settings) -> None:
    setup_logging(kind, fmt=settings.log_format, level=settings.log_level)
    serve_metrics(settings.metrics_port)
    engine = make_engine(settings.effective_database_url, fsync=settings.fsync)
    sessions = make_sessionmaker(engine)
    client = redis_client(settings.redis_url, socket_timeout=30)
    keys = Keys(settings.redis_prefix)
    publish = Publisher(client, keys, settings.events_maxlen)
    logging.getLogger().addHandler(MeetingLogForwarder(kind, publish.log))
    storage = LocalStorage(settings.data_dir, fsync=settings.fsync)
    stop = threading.Event()
    install_signal_handlers(stop)
    common = {
        "consumer": consumer_name(kind),
        "lease_ms": settings.lease_ms,
        "max_deliveries": settings.max_deliveries,
        "block_ms": settings.block_ms,
        "claim_interval_s": settings.claim_interval_s,
        "transient": _unavailable,  # an outage is waited out holding the entry, never counted against it
    }
    if kind == "processing":
        from audioflow.workers.stt import load_engine

        stt = load_engine(settings.stt_engine, language=settings.stt_language, model=settings.whisper_model)
        overlap_s = stt.default_overlap_s if settings.stt_overlap_s is None else settings.stt_overlap_s
        pdeps = processing.ProcessingDeps(sessions, storage, stt, publish, overlap_s)
        consumer = StreamConsumer(
            client,
            keys.transcribe,
            PROCESSING_GROUP,
            functools.partial(processing.handle, deps=pdeps),
            on_dead_letter=functools.partial(processing.on_dead_letter, deps=pdeps),
            **common,  # type: ignore[arg-type]
        )
    else:
        cdeps = concat.ConcatDeps(
            sessions,
            storage,
            publish,
            settings.gap_timeout_s,
            max_gap_s=settings.max_gap_s,
            max_meeting_s=settings.max_meeting_s,
        )
        consumer = StreamConsumer(
            client,
            keys.concat,
            CONCAT_GROUP,
            functools.partial(concat.handle, deps=cdeps),
            **common,  # type: ignore[arg-type]
        )
        sweep_interval = max(0.5, min(5.0, settings.gap_timeout_s / 4))
        _periodically("gap sweep", sweep_interval, functools.partial(concat.sweep, cdeps), stop)
        # Work that Redis lost (a restart without its data) is enqueued again from the database.
        _periodically(
            "reconcile",
            settings.reconcile_interval_s,
            functools.partial(
                reconcile.reconcile_once_per_interval,
                cdeps.publish,
                sessions,
                settings.reconcile_interval_s,
                settings.signature_tolerance_s,
            ),
            stop,
        )
    log.info("%s worker %s consuming %s", kind, common["consumer"], consumer.stream)
    try:
        consumer.run(stop)
    finally:
        client.close()
        engine.dispose()
        log.info("%s worker stopped", kind)
