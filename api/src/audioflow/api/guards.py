"""ASGI guards in front of every route: request body limits (size and time) and security headers.

The body guard owns both limits for every HTTP request, so no route can forget one: a body is read here
up to its route's size limit and within ``AUDIOFLOW_BODY_TIMEOUT_S`` (a slow-loris client trickling a body
gets 408, not a worker held forever), then replayed to the route. Bodies are small (a chunk is at most
``AUDIOFLOW_MAX_CHUNK_BYTES``, everything else JSON), and the chunk routes need the whole body anyway:
the signature covers it.
"""

from __future__ import annotations

import asyncio
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from audioflow.api.errors import error_response
from audioflow.core.errors import AudioflowError, PayloadTooLarge, RequestTimeout

JSON_BODY_LIMIT = 64 * 1024  # every body but a chunk upload is a small JSON document
_CHUNK_UPLOAD = re.compile(r"/v1/meetings/.+/chunks/[^/]*")


class BodyGuard:
    def __init__(self, app: ASGIApp, *, max_chunk_bytes: int, timeout_s: float) -> None:
        self.app = app
        self.max_chunk_bytes = max_chunk_bytes
        self.timeout_s = timeout_s

    def limit_for(self, scope: Scope) -> int:
        if scope["method"] == "PUT" and _CHUNK_UPLOAD.fullmatch(scope["path"]):
            return self.max_chunk_bytes
        return JSON_BODY_LIMIT

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            body = await self._read(scope, receive, self.limit_for(scope))
        except AudioflowError as exc:
            await error_response(exc.http_status, exc.code, exc.message)(scope, receive, send)
            return
        if body is None:  # the client left mid-body: nobody to answer, nothing to store
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:  # the body once, then the server's own messages (disconnect)
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _read(self, scope: Scope, receive: Receive, limit: int) -> bytes | None:
        declared = dict(scope["headers"]).get(b"content-length", b"").decode("latin-1")
        if declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(
                f"body of {declared} bytes is larger than the limit of {limit} bytes", code="body_too_large"
            )
        body = bytearray()
        try:
            async with asyncio.timeout(self.timeout_s):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return None
                    body += message.get("body", b"")
                    if len(body) > limit:
                        raise PayloadTooLarge(
                            f"body is larger than the limit of {limit} bytes", code="body_too_large"
                        )
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            raise RequestTimeout(
                f"the request body did not arrive within {self.timeout_s:g} s", code="body_timeout"
            ) from None
        return bytes(body)


# Every response: the page is served from this origin only, never framed, and types are never sniffed.
# Its scripts and styles are files Vite emits (no inline script); connect-src 'self' covers the same-origin
# WebSocket; media may come from blob: for downloads.
SECURITY_HEADERS = {
    b"content-security-policy": (
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
        b"form-action 'self'; frame-ancestors 'none'"
    ),
    b"x-content-type-options": b"nosniff",
    b"x-frame-options": b"DENY",
    b"referrer-policy": b"no-referrer",
    b"cross-origin-opener-policy": b"same-origin",
    b"permissions-policy": b"camera=(), microphone=(), geolocation=()",
}


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in SECURITY_HEADERS.items() if k not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)
