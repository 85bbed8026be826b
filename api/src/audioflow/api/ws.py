"""What the gateway's push WebSockets (live audio, the meeting list) share: the token, refusals, and
noticing that the client left."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, TypeVar

from fastapi import WebSocket, WebSocketDisconnect

from audioflow.api.context import AppContext
from audioflow.api.deps import check_token
from audioflow.core.errors import AudioflowError

T = TypeVar("T")

CLOSE_BASE = 4000  # a refusal closes with 4000 + the HTTP status the same error would have had


class TooManyListeners(AudioflowError):
    code = "too_many_listeners"
    http_status = 429
    retry = True  # once others have left


def authorize(ctx: AppContext, websocket: WebSocket) -> None:
    """The reader token, from a bearer header or ``?token=``."""
    header = websocket.headers.get("authorization", "")
    check_token(
        ctx, header[7:] if header.lower().startswith("bearer ") else websocket.query_params.get("token")
    )


async def refuse(websocket: WebSocket, exc: AudioflowError) -> None:
    await websocket.accept()
    await websocket.send_json({"error": {"code": exc.code, "message": exc.message}})
    await websocket.close(code=CLOSE_BASE + exc.http_status, reason=exc.code)


async def until_gone(websocket: WebSocket) -> None:
    """Returns when the client leaves (what it sends is ignored)."""
    with contextlib.suppress(WebSocketDisconnect):
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass


async def send_until_gone(
    websocket: WebSocket, sending: Coroutine[Any, Any, T]
) -> tuple[asyncio.Task[T], bool]:
    """Run ``sending`` until it ends or the client leaves, whichever comes first; the other is then
    cancelled and awaited (its error swallowed). Returns the sender's task, done or cancelled, and
    whether the client left."""
    sender = asyncio.create_task(sending)
    gone = asyncio.create_task(until_gone(websocket))
    await asyncio.wait({sender, gone}, return_when=asyncio.FIRST_COMPLETED)
    for task in (sender, gone):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    return sender, gone.done() and not gone.cancelled()
