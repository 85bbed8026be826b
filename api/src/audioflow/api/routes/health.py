"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from audioflow.api.deps import Ctx
from audioflow.api.schemas import Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={
        200: {"model": Readiness},
        503: {
            "model": Readiness,
            "description": "Redis or the database is unreachable, or the data folder is (nearly) full",
        },
    },
)
async def readyz(ctx: Ctx) -> JSONResponse:
    """Redis and the database are reachable, and the data folder has room for a chunk."""
    checks: dict[str, str] = {}
    try:
        await ctx.aredis.ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"unreachable: {type(exc).__name__}"

    def ping_db() -> None:
        with ctx.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    try:
        await run_in_threadpool(ping_db)
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
    try:
        free = await run_in_threadpool(ctx.storage.free_bytes)
        needed = ctx.settings.effective_min_free_bytes
        checks["storage"] = "ok" if free >= needed else f"full: {free} bytes free, {needed} needed"
    except OSError as exc:
        checks["storage"] = f"unavailable: {type(exc).__name__}"
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status_code=200 if ready else 503,
        headers=None if ready else {"Retry-After": "2"},
    )


# Served on the API's port unless AUDIOFLOW_METRICS_PORT gives it a port of its own.
metrics_router = APIRouter(tags=["health"])


@metrics_router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
