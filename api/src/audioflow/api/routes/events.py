"""Reader API: a meeting's events over WebSocket, replayed from ``since`` and then followed live."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from audioflow.api.context import AppContext
from audioflow.api.deps import check_token
from audioflow.core.db import queries
from audioflow.core.errors import AudioflowError, BadRequest
from audioflow.core.events import decode_event, read_after
from audioflow.core.ids import check_meeting_id

router = APIRouter(tags=["events"])
log = logging.getLogger("audioflow.api.events")

_CURSOR = re.compile(r"^[0-9]{1,20}(-[0-9]{1,20})?$")
REPLAY_PAGE = 500
BLOCK_MS = 5_000  # well under the async client's 30 s socket timeout

# WebSocket close codes: 4000 + the HTTP status the same error would have had.
CLOSE_BASE = 4000


def _cursor(since: str | None) -> str:
    if since is None or since == "":
        return "0"
    # Stream ids are two unsigned 64-bit numbers; Redis refuses larger ones (and a range after the very
    # largest id), which would fail mid-stream instead of here.
    if not _CURSOR.fullmatch(since) or any(int(part) >= 2**64 - 1 for part in since.split("-")):
        raise BadRequest(
            f"since={since[:40]!r} is not an event id (like 1700000000000-0)", code="invalid_since"
        )
    return since


def _generation(ctx: AppContext, meeting_id: str) -> str:
    with ctx.sessions() as session:
        return queries.generation(queries.get_meeting(session, meeting_id))


def _alive(ctx: AppContext, meeting_id: str, generation: str) -> bool:
    with ctx.sessions() as session:
        return queries.get_live_meeting(session, meeting_id, generation) is not None


async def _refuse(websocket: WebSocket, exc: AudioflowError) -> None:
    await websocket.accept()
    await websocket.send_json({"error": {"code": exc.code, "message": exc.message}})
    await websocket.close(code=CLOSE_BASE + exc.http_status, reason=exc.code)


async def _send_after(
    ctx: AppContext, websocket: WebSocket, meeting_id: str, generation: str, cursor: str
) -> None:
    """Replay everything after ``cursor`` page by page, then block for new events. Returns when the
    meeting has been deleted (checked whenever a wait for new events ends empty)."""
    stream = ctx.keys.events(meeting_id)
    block: int | None = None
    while True:
        page = await read_after(ctx.aredis, stream, cursor, count=REPLAY_PAGE, block_ms=block)
        for event_id, fields in page:
            await websocket.send_text(json.dumps(decode_event(meeting_id, event_id, fields)))
            cursor = event_id
        if (
            block is not None
            and not page
            and not await run_in_threadpool(_alive, ctx, meeting_id, generation)
        ):
            return
        if block is None and len(page) < REPLAY_PAGE:
            block = BLOCK_MS  # caught up: from now on wait for new events


@router.websocket("/v1/meetings/{meeting_id}/events")
async def meeting_events(websocket: WebSocket, meeting_id: str) -> None:
    """Events ``{id, meeting_id, type, ts, data}`` of one meeting. ``?since=<id>`` replays what came after
    that id (omit it to get everything); ``?token=`` or a bearer header authenticates."""
    ctx: AppContext = websocket.app.state.ctx
    try:
        header = websocket.headers.get("authorization", "")
        token = header[7:] if header.lower().startswith("bearer ") else websocket.query_params.get("token")
        check_token(ctx, token)
        check_meeting_id(meeting_id)
        cursor = _cursor(websocket.query_params.get("since"))
        generation = await run_in_threadpool(_generation, ctx, meeting_id)
    except AudioflowError as exc:
        await _refuse(websocket, exc)
        return
    await websocket.accept()
    sender = asyncio.create_task(_send_after(ctx, websocket, meeting_id, generation, cursor))
    try:
        while not sender.done():  # the client sends nothing meaningful; receive() notices it leave
            receiver = asyncio.create_task(websocket.receive())
            done, _ = await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
            if receiver in done and receiver.result()["type"] == "websocket.disconnect":
                break
            if receiver not in done:
                receiver.cancel()
    except WebSocketDisconnect:
        pass
    finally:
        sender.cancel()
        # Whatever the sender died of is looked at below; re-raising it here would drop the connection
        # without a close frame.
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sender
    if sender.done() and not sender.cancelled() and sender.exception() is not None:
        # Redis went away mid-stream: tell the client to reconnect (with ``since``) rather than hang.
        log.warning("event stream of %s ended: %s", meeting_id, sender.exception())
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await websocket.close(code=1011, reason="event source unavailable; reconnect with since")
    elif sender.done() and not sender.cancelled():
        # The meeting was deleted: say so, as a refusal would, and close (reconnecting cannot help).
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            gone = f"meeting {meeting_id!r} was deleted"
            await websocket.send_json({"error": {"code": "meeting_deleted", "message": gone}})
            await websocket.close(code=CLOSE_BASE + 404, reason="meeting_deleted")
