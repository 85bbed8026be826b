"""The two ingest routes served in front of the framework's own layers, routing, dependency solving and
response model.

At thousands of chunks a second, FastAPI's and Starlette's layers (the server-error, telemetry and
body-limit middlewares, the exception middleware, the route table, the dependencies and the response
model) cost the gateway more than a tenth of its time per chunk. :class:`audioflow.api.app.Gateway`
sends ``PUT …/chunks/{seq}`` and ``POST /webhooks/chunk`` (matched exactly as their routes' templates
match) through the app's own middleware (security headers, CORS, the body guard: the same classes with
the same options) straight to :func:`serve_ingest`, which answers with the functions the FastAPI routes
call (``routes/ingest.py``: :func:`accept_upload`, :func:`accept_webhook`, :func:`answer`) and the same
error envelopes. A bug is answered 500 by the server (uvicorn), as the framework would. The routes stay
the contract: the OpenAPI document describes them, and whatever this path does not match exactly
(another method, a trailing slash, a ``root_path``) reaches them as before.
"""

from __future__ import annotations

from collections.abc import Awaitable

from pydantic import TypeAdapter
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import compile_path
from starlette.types import Receive, Scope, Send

from audioflow.api.acceptance import Accepted
from audioflow.api.errors import dependency_or_domain_error
from audioflow.api.routes.ingest import CHUNK_ROUTE, WEBHOOK_ROUTE, accept_upload, accept_webhook, answer
from audioflow.api.schemas import ChunkAccepted

# Serializes by ChunkAccepted's schema, so an Accepted is sent with the answer's fields only (as the
# routes' response model does), without copying it into a ChunkAccepted first.
_ANSWER = TypeAdapter(ChunkAccepted)
# Starlette's own compiled form of the route's template, so both match exactly the same paths.
_CHUNK_PATH, _, _CHUNK_CONVERTORS = compile_path(CHUNK_ROUTE)


def ingest_path_params(scope: Scope) -> dict[str, object] | None:
    """The path parameters of an ingest request (none for the webhook), or None for any other request."""
    if scope["type"] != "http" or scope.get("root_path"):
        return None
    method, path = scope["method"], scope["path"]
    if method == "PUT" and (match := _CHUNK_PATH.match(path)) is not None:
        return {k: _CHUNK_CONVERTORS[k].convert(v) for k, v in match.groupdict().items()}
    if method == "POST" and path == WEBHOOK_ROUTE:
        return {}
    return None


async def serve_ingest(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer an ingest request (its ``path_params`` in the scope), as its FastAPI route would."""
    request = Request(scope, receive)
    if scope["method"] == "PUT":
        params = scope["path_params"]
        accepting: Awaitable[Accepted] = accept_upload(request, params["meeting_id"], params["seq"])
    else:
        accepting = accept_webhook(request)
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
