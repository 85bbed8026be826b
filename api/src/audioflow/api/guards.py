"""ASGI guards in front of every route: request body limits (size, time, uploads in flight) and security
headers.

The body guard owns these limits for every HTTP request, so no route can forget one: a body is read here
up to its route's size limit and within ``AUDIOFLOW_BODY_TIMEOUT_S`` (a slow-loris client trickling a body
gets 408, not a worker held forever), then handed to the route. JSON bodies are small and replayed as
they are. Signed requests (chunk uploads and ``POST /webhooks/chunk``) are refused before their body is
read when their signature headers are missing, malformed or stale. A chunk upload is also refused when
``AUDIOFLOW_MAX_UPLOADS_IN_FLIGHT`` bodies are already being received (503 ``uploads_busy``); otherwise
its body is spooled (memory up to 1 MiB, then an unnamed file in the data folder) and the route reads it
with :func:`chunk_body`, mapped, never copied whole into memory. The signature itself covers the body,
so it is checked by the route once the body is complete.
"""

from __future__ import annotations

import asyncio
import errno
import mmap
import re
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from audioflow.api.errors import RETRY_AFTER_S, error_response
from audioflow.core.api_paths import MEETINGS
from audioflow.core.errors import (
    AudioflowError,
    PayloadTooLarge,
    RequestTimeout,
    StorageFull,
    Unavailable,
)

JSON_BODY_LIMIT = 64 * 1024  # every body but a chunk upload is a small JSON document
SPOOL_IN_MEMORY = 1024 * 1024  # a typical chunk (5 s at 16 kHz is 160 KB) never touches the disk
_CHUNK_UPLOAD = re.compile(re.escape(MEETINGS) + r"/.+/chunks/[^/]*")
_WEBHOOK = "/webhooks/chunk"  # signed too
_BODY = "audioflow.chunk_body"


class Spool:
    """A body as it arrives: in memory up to ``SPOOL_IN_MEMORY``, then in an unnamed file in ``folder``
    (gone with its last handle, even after a crash)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.size = 0
        self._memory = bytearray()
        self._file: IO[bytes] | None = None
        self._map: mmap.mmap | None = None
        self._view: memoryview | None = None

    def write(self, data: bytes) -> None:
        self.size += len(data)
        try:
            if self._file is None and self.size > SPOOL_IN_MEMORY:
                self.folder.mkdir(parents=True, exist_ok=True)
                self._file = tempfile.TemporaryFile(dir=self.folder, prefix=".spool-")  # noqa: SIM115 (closed by close())
                self._file.write(self._memory)
                self._memory = bytearray()
            if self._file is not None:
                self._file.write(data)
            else:
                self._memory += data
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StorageFull("the data folder is full: the chunk was not received; retry later") from exc
            raise

    def view(self) -> memoryview:
        """The whole body; a spooled one is mapped, so its pages are file cache, not process memory."""
        if self._view is None:
            if self._file is None or self.size == 0:
                self._view = memoryview(bytes(self._memory))
            else:
                self._file.flush()
                self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
                self._view = memoryview(self._map)
        return self._view

    def close(self) -> None:
        try:
            if self._view is not None:
                self._view.release()
            if self._map is not None:
                self._map.close()
        except BufferError:
            pass  # a view of it is still referenced (say by a traceback): unmapped when collected
        if self._file is not None:
            self._file.close()


def chunk_body(request: Request) -> memoryview:
    """The chunk upload's body, as received by :class:`BodyGuard`."""
    spool: Spool = request.scope[_BODY]
    return spool.view()


class BodyGuard:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_chunk_bytes: int,
        timeout_s: float,
        max_uploads: int,
        spool_dir: Path,
        check_signature: Callable[[Mapping[str, str]], object],
    ) -> None:
        self.app = app
        self.max_chunk_bytes = max_chunk_bytes
        self.timeout_s = timeout_s
        self.max_uploads = max_uploads
        self.spool_dir = spool_dir
        self.check_signature = check_signature  # raises for headers that can never verify
        self.uploads = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        upload = scope["method"] == "PUT" and _CHUNK_UPLOAD.fullmatch(scope["path"]) is not None
        spool = Spool(self.spool_dir)
        taken = False
        try:
            try:
                # Refused on the head alone, before a byte of the body is read: a size over the limit,
                # signature headers that can never verify, no room for one more upload.
                limit = self.max_chunk_bytes if upload else JSON_BODY_LIMIT
                self._check_declared(scope, limit)
                if upload or (scope["method"] == "POST" and scope["path"] == _WEBHOOK):
                    self.check_signature(Headers(scope=scope))
                if upload:
                    self._take_upload_slot()
                    taken = True
                if not await self._read(receive, spool, limit):
                    return  # the client left mid-body: nobody to answer, nothing to store
                if taken:  # the slot bounds bodies being received; this one is in (in memory <= 1 MiB)
                    self.uploads -= 1
                    taken = False
            except AudioflowError as exc:
                headers = {"Retry-After": RETRY_AFTER_S} if exc.retry else None
                await error_response(exc.http_status, exc.code, exc.message, headers)(scope, receive, send)
                return
            if upload:
                scope[_BODY] = spool
                body = b""  # the route reads the spool (chunk_body), not the replayed message
            else:
                body = bytes(spool.view())
            replayed = False

            async def replay() -> Message:
                nonlocal replayed
                if not replayed:  # the body once, then the server's own messages (disconnect)
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            await self.app(scope, replay, send)
        finally:
            if taken:
                self.uploads -= 1
            spool.close()

    def _take_upload_slot(self) -> None:
        if self.uploads >= self.max_uploads:
            raise Unavailable(
                f"{self.max_uploads} chunk uploads are already being received "
                "(AUDIOFLOW_MAX_UPLOADS_IN_FLIGHT); retry later",
                code="uploads_busy",
            )
        self.uploads += 1

    @staticmethod
    def _check_declared(scope: Scope, limit: int) -> None:
        declared = dict(scope["headers"]).get(b"content-length", b"").decode("latin-1")
        if declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(
                f"body of {declared} bytes is larger than the limit of {limit} bytes", code="body_too_large"
            )

    async def _read(self, receive: Receive, spool: Spool, limit: int) -> bool:
        """Receive the whole body into ``spool``; False if the client left first."""
        try:
            async with asyncio.timeout(self.timeout_s):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return False
                    spool.write(message.get("body", b""))
                    if spool.size > limit:
                        raise PayloadTooLarge(
                            f"body is larger than the limit of {limit} bytes", code="body_too_large"
                        )
                    if not message.get("more_body", False):
                        return True
        except TimeoutError:
            raise RequestTimeout(
                f"the request body did not arrive within {self.timeout_s:g} s", code="body_timeout"
            ) from None


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
