"""Reader API: a meeting's events over WebSocket, replayed from ``since`` and then followed live.

Followers are cheap: one reader task per meeting (whatever its number of followers) blocks on the
meeting's stream with a Redis client of its own and fans each page out to its followers' queues, so a
follower holds no Redis connection and request traffic (and ``/readyz``) never waits behind followers.
A follower's replay of what it missed is a few short ``XRANGE`` pages on that client, at most
``REPLAYS_AT_ONCE`` at a time. At most ``AUDIOFLOW_MAX_EVENT_FOLLOWERS`` follow at once per gateway
process, and ``AUDIOFLOW_MAX_EVENT_FOLLOWERS_PER_MEETING`` per meeting; one more is refused with close
code 4429 (``too_many_followers``). A follower too slow to take what its meeting publishes is closed with
1013 and reconnects with ``since``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from dataclasses import dataclass, field
from typing import Literal

import redis.asyncio as aioredis
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from audioflow.api.context import AppContext
from audioflow.api.deps import check_token
from audioflow.core.api_paths import MEETINGS
from audioflow.core.db import queries
from audioflow.core.errors import AudioflowError, BadRequest
from audioflow.core.events import decode_event, last_event_id, read_after
from audioflow.core.ids import check_meeting_id

router = APIRouter(tags=["events"])
log = logging.getLogger("audioflow.api.events")

_CURSOR = re.compile(r"^[0-9]{1,20}(-[0-9]{1,20})?$")
REPLAY_PAGE = 500
BLOCK_MS = 5_000  # well under the followers' client's 30 s socket timeout
REPLAYS_AT_ONCE = 16
QUEUE_PAGES = 64  # pages a follower may fall behind its meeting's reader before it is closed (1013)

# WebSocket close codes: 4000 + the HTTP status the same error would have had.
CLOSE_BASE = 4000

Page = list[tuple[str, dict[str, str]]]
End = Literal["deleted", "broken", "overrun"]


class TooManyFollowers(AudioflowError):
    code = "too_many_followers"
    http_status = 429


def _order(event_id: str) -> tuple[int, int]:
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq or 0)


@dataclass(eq=False)
class Follower:
    feed: Feed
    queue: asyncio.Queue[Page | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_PAGES))
    overrun: bool = False

    def offer(self, item: Page | None) -> None:
        if self.overrun:
            return
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.overrun = True  # what it holds is still a gap-free prefix; it ends after sending that

    async def next(self) -> Page | End:
        if self.overrun and self.queue.empty():
            return "overrun"
        item = await self.queue.get()
        return item if item is not None else self.feed.end or "broken"


@dataclass(eq=False)
class Feed:
    """One meeting's event stream, read by one task for all its followers."""

    meeting_id: str
    generation: str
    followers: set[Follower] = field(default_factory=set)
    ready: asyncio.Event = field(default_factory=asyncio.Event)  # set once the reader knows where it starts
    end: End | None = None
    problem: str = ""
    task: asyncio.Task[None] | None = None

    def finish(self, end: End, problem: str = "") -> None:
        self.end, self.problem = end, problem
        self.ready.set()
        for follower in self.followers:
            follower.offer(None)


class EventHub:
    """The gateway's event followers, with their own Redis client (see the module's docstring)."""

    def __init__(self, client: aioredis.Redis, *, max_followers: int, max_per_meeting: int) -> None:
        self.client = client
        self.max_followers = max_followers
        self.max_per_meeting = max_per_meeting
        self.followers = 0
        self._feeds: dict[str, Feed] = {}
        self._replays = asyncio.Semaphore(REPLAYS_AT_ONCE)

    def join(self, ctx: AppContext, meeting_id: str, generation: str) -> Follower:
        """A new follower of the meeting; raises :class:`TooManyFollowers` past either limit."""
        if self.followers >= self.max_followers:
            raise TooManyFollowers(
                f"this gateway already serves {self.max_followers} event followers "
                "(AUDIOFLOW_MAX_EVENT_FOLLOWERS); retry later"
            )
        feed = self._feeds.get(meeting_id)
        if feed is not None and (feed.generation != generation or feed.end is not None):
            feed = None  # an earlier meeting with this id, or a failed reader: start afresh
        if feed is not None and len(feed.followers) >= self.max_per_meeting:
            raise TooManyFollowers(
                f"meeting {meeting_id!r} already has {self.max_per_meeting} event followers on this gateway "
                "(AUDIOFLOW_MAX_EVENT_FOLLOWERS_PER_MEETING); retry later"
            )
        if feed is None:
            feed = Feed(meeting_id, generation)
            feed.task = asyncio.create_task(self._read(ctx, feed), name=f"events {meeting_id}")
            self._feeds[meeting_id] = feed
        follower = Follower(feed)
        feed.followers.add(follower)
        self.followers += 1
        return follower

    def leave(self, follower: Follower) -> None:
        feed = follower.feed
        feed.followers.discard(follower)
        self.followers -= 1
        if not feed.followers:
            if feed.task is not None:
                feed.task.cancel()
            if self._feeds.get(feed.meeting_id) is feed:
                del self._feeds[feed.meeting_id]

    async def replay(self, stream: str, cursor: str) -> Page:
        async with self._replays:
            return await read_after(self.client, stream, cursor, count=REPLAY_PAGE)

    async def _read(self, ctx: AppContext, feed: Feed) -> None:
        stream = ctx.keys.events(feed.meeting_id)
        try:
            cursor = await last_event_id(self.client, stream) or "0"
            feed.ready.set()  # followers replay up to here themselves; what comes later they get here
            while True:
                page = await read_after(self.client, stream, cursor, count=REPLAY_PAGE, block_ms=BLOCK_MS)
                if page:
                    cursor = page[-1][0]
                    for follower in feed.followers:
                        follower.offer(page)
                elif not await run_in_threadpool(_alive, ctx, feed.meeting_id, feed.generation):
                    feed.finish("deleted")
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # whatever it is, the followers must hear of it
            log.warning("event stream of %s ended: %s", feed.meeting_id, exc)
            feed.finish("broken", str(exc))

    async def aclose(self) -> None:
        for feed in list(self._feeds.values()):
            if feed.task is not None:
                feed.task.cancel()
        await self.client.aclose()


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
    ctx: AppContext, hub: EventHub, websocket: WebSocket, follower: Follower, cursor: str
) -> End:
    """Replay everything after ``cursor`` page by page, then pass on what the meeting's reader gets.
    Returns why it stopped: the meeting was deleted, its reader failed, or this follower fell behind."""
    feed = follower.feed
    await feed.ready.wait()
    stream = ctx.keys.events(feed.meeting_id)
    while feed.end != "broken":  # up to where the reader started, at least; it has what comes after
        page = await hub.replay(stream, cursor)
        for event_id, fields in page:
            await websocket.send_text(json.dumps(decode_event(feed.meeting_id, event_id, fields)))
            cursor = event_id
        if len(page) < REPLAY_PAGE:
            break
    last = _order(cursor) if cursor != "0" else (0, 0)
    while True:
        page_or_end = await follower.next()
        if isinstance(page_or_end, str):
            return page_or_end
        for event_id, fields in page_or_end:
            if _order(event_id) > last:  # the reader's first pages may overlap the replay
                await websocket.send_text(json.dumps(decode_event(feed.meeting_id, event_id, fields)))
                last = _order(event_id)


@router.websocket(MEETINGS + "/{meeting_id}/events")
async def meeting_events(websocket: WebSocket, meeting_id: str) -> None:
    """Events ``{id, meeting_id, type, ts, data}`` of one meeting. ``?since=<id>`` replays what came after
    that id (omit it to get everything); ``?token=`` or a bearer header authenticates. Past the follower
    limits the socket is closed with 4429 (``too_many_followers``)."""
    ctx: AppContext = websocket.app.state.ctx
    hub: EventHub = websocket.app.state.event_hub
    try:
        header = websocket.headers.get("authorization", "")
        token = header[7:] if header.lower().startswith("bearer ") else websocket.query_params.get("token")
        check_token(ctx, token)
        check_meeting_id(meeting_id)
        cursor = _cursor(websocket.query_params.get("since"))
        generation = await run_in_threadpool(_generation, ctx, meeting_id)
        follower = hub.join(ctx, meeting_id, generation)
    except AudioflowError as exc:
        await _refuse(websocket, exc)
        return
    try:
        await _follow(ctx, hub, websocket, follower, cursor)
    finally:
        hub.leave(follower)


async def _follow(
    ctx: AppContext, hub: EventHub, websocket: WebSocket, follower: Follower, cursor: str
) -> None:
    meeting_id = follower.feed.meeting_id
    await websocket.accept()
    sender = asyncio.create_task(_send_after(ctx, hub, websocket, follower, cursor))
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
    if not sender.done() or sender.cancelled():
        return  # the client left
    end = "broken" if sender.exception() is not None else sender.result()
    with contextlib.suppress(RuntimeError, WebSocketDisconnect):
        if end == "broken":
            # Redis went away mid-stream: tell the client to reconnect (with ``since``) rather than hang.
            problem = sender.exception() or follower.feed.problem
            log.warning("event stream of %s ended: %s", meeting_id, problem)
            await websocket.close(code=1011, reason="event source unavailable; reconnect with since")
        elif end == "overrun":
            await websocket.close(code=1013, reason="fell behind the meeting's events; reconnect with since")
        else:  # deleted: say so, as a refusal would, and close (reconnecting cannot help)
            gone = f"meeting {meeting_id!r} was deleted"
            await websocket.send_json({"error": {"code": "meeting_deleted", "message": gone}})
            await websocket.close(code=CLOSE_BASE + 404, reason="meeting_deleted")
