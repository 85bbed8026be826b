"""Reader API: the meeting list pushed over a WebSocket whenever it changes (the page's list).

``WS /v1/meetings?token=…`` sends ``{"type": "meetings", "meetings": [...]}`` (the first
:data:`LIMIT` meetings, as ``GET /v1/meetings`` lists them) at once and again whenever any of them
changes. One feed per gateway process reads the list from the database every :data:`POLL_S` seconds
while anyone listens, whatever their number, and sends only what changed. Refusals close with 4000 +
the HTTP status (4401 token, 4429 more than :data:`MAX_LISTENERS`), 1011 if the database fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from audioflow.api.context import AppContext
from audioflow.api.schemas import MeetingList
from audioflow.api.ws import TooManyListeners, authorize, refuse, send_until_gone
from audioflow.core.api_paths import MEETINGS
from audioflow.core.db import queries
from audioflow.core.errors import AudioflowError

router = APIRouter(tags=["meetings"])
log = logging.getLogger("audioflow.api.meeting_list")

LIMIT = 100
POLL_S = 1.0
MAX_LISTENERS = 1000


def _load(ctx: AppContext) -> str:
    with ctx.sessions() as session:
        ids = queries.meeting_ids(session, limit=LIMIT, offset=0)
        meetings = [queries.meeting_status(session, i) for i in ids]
    return json.dumps({"type": "meetings", **MeetingList(meetings=meetings).model_dump(mode="json")})


class MeetingListFeed:
    """The list as last read (JSON text), and an event that fires when it changes."""

    def __init__(self, poll_s: float = POLL_S) -> None:
        self.poll_s = poll_s
        self.latest = ""
        self.failed: str | None = None
        self.changed = asyncio.Event()
        self.listeners = 0
        self._task: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def listen(self, ctx: AppContext) -> AsyncIterator[None]:
        if self.listeners >= MAX_LISTENERS:
            raise TooManyListeners(f"this gateway already pushes the meeting list to {MAX_LISTENERS} pages")
        if self._task is None or self._task.done():  # the first listener, or the last poll failed
            self.latest, self.failed = "", None
            self._task = asyncio.create_task(self._poll(ctx), name="meeting list")
        self.listeners += 1
        try:
            yield
        finally:
            self.listeners -= 1
            if self.listeners == 0 and self._task is not None:
                self._task.cancel()
                self._task = None

    def _set(self, latest: str, failed: str | None = None) -> None:
        self.latest, self.failed = latest, failed
        self.changed.set()
        self.changed = asyncio.Event()

    async def _poll(self, ctx: AppContext) -> None:
        while True:
            try:
                latest = await run_in_threadpool(_load, ctx)
            except Exception as exc:  # the listeners are told, and reconnect
                log.warning("meeting list: cannot read the database: %s", exc)
                self._set(self.latest, f"the meeting list cannot be read: {exc}")
                return
            if latest != self.latest:
                self._set(latest)
            await asyncio.sleep(self.poll_s)


async def _push(websocket: WebSocket, feed: MeetingListFeed) -> str:
    """Send the list now and on every change; returns why it stopped (a database failure)."""
    while True:
        changed = feed.changed
        if feed.failed is not None:
            return feed.failed
        if feed.latest:  # empty until the first read
            await websocket.send_text(feed.latest)
        await changed.wait()


@router.websocket(MEETINGS)
async def meeting_list(websocket: WebSocket) -> None:
    """The meeting list, pushed as it changes; see the module doc."""
    ctx: AppContext = websocket.app.state.ctx
    feed: MeetingListFeed = websocket.app.state.meeting_list
    async with contextlib.AsyncExitStack() as stack:
        try:
            authorize(ctx, websocket)
            await stack.enter_async_context(feed.listen(ctx))
        except AudioflowError as exc:
            await refuse(websocket, exc)
            return
        await websocket.accept()
        sender, _ = await send_until_gone(websocket, _push(websocket, feed))
        if sender.done() and not sender.cancelled() and sender.exception() is None:
            with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
                await websocket.send_json({"error": {"code": "unavailable", "message": sender.result()}})
                await websocket.close(code=1011, reason="unavailable")
