"""The gateway application: ``create_app(settings)``; clients are built in the lifespan."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from prometheus_client import start_http_server

from audioflow.api.acceptance import LOG_COMPONENT, check_signature_headers
from audioflow.api.context import AppContext
from audioflow.api.errors import install_error_handlers
from audioflow.api.group_commit import GroupCommit
from audioflow.api.guards import BodyGuard, SecurityHeaders
from audioflow.api.ingest_fast_path import IngestFastPath
from audioflow.api.routes import (
    audio,
    events,
    health,
    ingest,
    live_audio,
    meeting_list,
    meetings,
    transcript,
)
from audioflow.core.db.engine import make_engine, make_sessionmaker
from audioflow.core.events import publish
from audioflow.core.keys import Keys
from audioflow.core.logs import MeetingLogForwarder
from audioflow.core.redis_client import async_redis_client, redis_client
from audioflow.core.settings import Settings
from audioflow.core.storage import LocalStorage

FRONTEND = Path(__file__).with_name("static")


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(
            settings.effective_database_url,
            fsync=settings.fsync,
            pool_size=settings.db_pool_size,
            max_overflow=0,
        )
        sync_redis = redis_client(settings.redis_url, socket_timeout=5.0)
        # Request traffic (events published by the API, deletion, readiness): short commands only.
        async_redis = async_redis_client(settings.redis_url, socket_timeout=5.0)
        # Event followers' own client: one blocking XREAD per followed meeting plus a few replays, so it
        # needs a longer read timeout and never takes a connection that a request needs.
        app.state.event_hub = events.EventHub(
            async_redis_client(
                settings.redis_url,
                socket_timeout=30.0,
                max_connections=settings.max_event_followers + events.REPLAYS_AT_ONCE,
                client_name=f"{settings.redis_prefix}events",
            ),
            max_followers=settings.max_event_followers,
            max_per_meeting=settings.max_event_followers_per_meeting,
        )
        app.state.ctx = AppContext(
            settings=settings,
            engine=engine,
            sessions=make_sessionmaker(engine),
            redis=sync_redis,
            aredis=async_redis,
            storage=LocalStorage(settings.data_dir, fsync=settings.fsync),
            keys=Keys(settings.redis_prefix),
        )
        app.state.group_commit = GroupCommit(app.state.ctx)
        # The gateway's lines about a meeting reach that meeting's page as ``log`` events too.
        forwarder = MeetingLogForwarder(
            LOG_COMPONENT,
            lambda meeting_id, data, generation: publish(
                sync_redis,
                app.state.ctx.keys,
                meeting_id,
                "log",
                data,
                generation=generation,
                maxlen=settings.events_maxlen,
            ),
        )
        logging.getLogger().addHandler(forwarder)
        metrics_server = start_http_server(settings.metrics_port)[0] if settings.metrics_port else None
        try:
            yield
        finally:
            if metrics_server is not None:
                metrics_server.shutdown()
                metrics_server.server_close()
            logging.getLogger().removeHandler(forwarder)
            await app.state.event_hub.aclose()
            await async_redis.aclose()
            sync_redis.close()
            engine.dispose()

    app = FastAPI(
        title="audioflow gateway",
        version="0.1.0",
        summary="Signed WAV chunk ingest, meetings, transcripts, live audio and events",
        lifespan=lifespan,
        # The OpenAPI document only when asked for; never Swagger UI or ReDoc, whose pages load scripts
        # from a CDN that the page's CSP (rightly) refuses, so they would be blank.
        openapi_url="/openapi.json" if settings.api_docs else None,
        docs_url=None,
        redoc_url=None,
        # No OpenTelemetry here (metrics are Prometheus): without this, FastAPI asks OpenTelemetry for
        # its providers on every request, a few percent of the gateway's time at a few hundred chunks/s.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    install_error_handlers(app)
    app.state.live_audio = live_audio.LiveAudioHub(settings.live_audio_max_listeners)
    app.state.meeting_list = meeting_list.MeetingListFeed()
    app.state.live_wav = live_audio.LiveAudioHub(
        settings.max_live_followers,
        max_per_meeting=settings.max_live_followers_per_meeting,
        setting="AUDIOFLOW_MAX_LIVE_FOLLOWERS",
        listeners="live.wav followers",
    )
    # Outermost last: headers go on every answer, the guards' own refusals included.
    app.add_middleware(IngestFastPath)  # innermost: behind the body guard, like the routes it serves
    app.add_middleware(
        BodyGuard,
        max_chunk_bytes=settings.max_chunk_bytes,
        timeout_s=settings.body_timeout_s,
        max_uploads=settings.max_uploads_in_flight,
        spool_dir=settings.data_dir / ".incoming",
        check_signature=functools.partial(check_signature_headers, settings),
    )
    if settings.cors_origins:  # the page is same-origin; only origins named here may call from a browser
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "PUT"],
            allow_headers=["authorization", "content-type", "range"],
            expose_headers=["content-range", "accept-ranges", "retry-after"],
            max_age=600,
        )
    app.add_middleware(SecurityHeaders)
    for router in (
        ingest.router,
        meetings.router,
        transcript.router,
        audio.router,
        events.router,
        live_audio.router,
        meeting_list.router,
        health.router,
    ):
        app.include_router(router)
    if not settings.metrics_port:  # else /metrics is on a port of its own (see the lifespan)
        app.include_router(health.metrics_router)
    if (FRONTEND / "index.html").is_file():  # built by `make frontend`; the API works without it
        app.mount("/", StaticFiles(directory=FRONTEND, html=True), name="frontend")
    return app
