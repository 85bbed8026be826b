"""The two ingest routes served without the framework's routing, dependency solving and response model.

At hundreds of chunks a second per process, matching the route table, solving dependencies and
validating the response model cost the gateway more than the chunk's own work (signature, WAV check,
hash, file, its share of a group commit). This middleware, the innermost, so the body guard, security
headers and CORS still apply, answers ``PUT …/chunks/{seq}`` and ``POST /webhooks/chunk`` itself with
the same functions the FastAPI routes call (``routes/ingest.py``: :func:`accept_upload`,
:func:`accept_webhook`, :func:`answer`) and the same error envelopes. The routes stay the contract: the
OpenAPI document describes them, and whatever this path does not match exactly (another method, a
trailing slash, a ``root_path``) reaches them as before.
"""

from __future__ import annotations

from collections.abc import Awaitable

from pydantic import TypeAdapter
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from audioflow.api.acceptance import Accepted
from audioflow.api.errors import dependency_or_domain_error
from audioflow.api.routes.ingest import CHUNK_ROUTE, WEBHOOK_ROUTE, accept_upload, accept_webhook, answer
from audioflow.api.schemas import ChunkAccepted

# Serializes by ChunkAccepted's schema, so an Accepted is sent with the answer's fields only (as the
# routes' response model does), without copying it into a ChunkAccepted first.
_ANSWER = TypeAdapter(ChunkAccepted)
# Starlette's own compiled form of the route's template, so both match exactly the same paths.
_CHUNK_PATH, _, _CHUNK_CONVERTORS = compile_path(CHUNK_ROUTE)


class IngestFastPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            method, path = scope["method"], scope["path"]
            if method == "PUT" and (match := _CHUNK_PATH.match(path)) is not None:
                params = {k: _CHUNK_CONVERTORS[k].convert(v) for k, v in match.groupdict().items()}
                request = Request(scope, receive)
                await _serve(
                    accept_upload(request, params["meeting_id"], params["seq"]), scope, receive, send
                )
                return
            if method == "POST" and path == WEBHOOK_ROUTE:
                await _serve(accept_webhook(Request(scope, receive)), scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _serve(accepting: Awaitable[Accepted], scope: Scope, receive: Receive, send: Send) -> None:
    try:
        status, body = answer(await accepting)
    except Exception as exc:
        refusal = dependency_or_domain_error(exc)
        if refusal is None:  # a bug: the server's last-resort handler answers it, as for any route
            raise
        await refusal(scope, receive, send)
        return
    response = Response(_ANSWER.dump_json(body), status_code=status, media_type="application/json")
    await response(scope, receive, send)
