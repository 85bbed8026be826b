"""One place that turns errors into the JSON envelope ``{"error": {"code", "message"}}``.

Client mistakes get 4xx with a message that names the problem; a dependency that is down gets 503
with ``Retry-After``; nothing a client sends can produce a 500.
"""

from __future__ import annotations

import logging

import redis.exceptions
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from audioflow.core.db.engine import UNAVAILABLE_ERRORS
from audioflow.core.errors import AudioflowError

log = logging.getLogger("audioflow.api")

RETRY_AFTER_S = "2"


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "request"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def dependency_or_domain_error(exc: Exception) -> JSONResponse | None:
    """The envelope for an audioflow error or a dependency that is down; None for anything else (a bug,
    which the server's last-resort handler answers 500)."""
    if isinstance(exc, AudioflowError):
        headers = {"Retry-After": RETRY_AFTER_S} if exc.retry or exc.http_status == 503 else None
        return error_response(exc.http_status, exc.code, exc.message, headers)
    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        log.warning("redis unavailable: %s", exc)
        return error_response(
            503,
            "redis_unavailable",
            "the queue (Redis) is unavailable; retry later",
            {"Retry-After": RETRY_AFTER_S},
        )
    if isinstance(exc, UNAVAILABLE_ERRORS):
        log.warning("database unavailable: %s", str(exc).splitlines()[0])
        return error_response(
            503,
            "database_unavailable",
            "the database is unavailable; retry later",
            {"Retry-After": RETRY_AFTER_S},
        )
    return None


def install_error_handlers(app: FastAPI) -> None:
    async def _known(_: Request, exc: Exception) -> JSONResponse:
        answer = dependency_or_domain_error(exc)
        if answer is None:  # registered only for the types it answers
            raise exc
        return answer

    for known in (
        AudioflowError,
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
        *UNAVAILABLE_ERRORS,
    ):
        app.add_exception_handler(known, _known)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "validation_error", _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}.get(
            exc.status_code, "http_error"
        )
        return error_response(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))
