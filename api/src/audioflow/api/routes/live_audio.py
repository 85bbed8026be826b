"""Reader API: the recording's PCM pushed over a WebSocket as it grows, for low-latency players.

``WS /v1/meetings/{id}/live-audio?token=…&from=live|start|<offset>&back_ms=<ms>``

- ``from``: ``live`` (default) starts at the recording's live edge, ``back_ms`` milliseconds before it
  (0 to 60000, so a player has something to play at once); ``start`` from the first sample; a number is a
  byte offset within the recording's PCM data (a multiple of the frame size, at most the edge): a client
  that reconnects sends the end of what it received and gets the rest, with no gap and no repeat.
- The first message is text: ``{"type": "start", "format": {sample_rate, channels, bits}, "offset": n,
  "edge": e}`` (byte offsets within the PCM data). Then binary messages, each an 8-byte little-endian
  unsigned offset followed by whole frames of PCM that start there.
- Once the meeting has completed or failed and everything has been sent: ``{"type": "end", "reason":
  phase}`` and close 1000. A refusal or failure is ``{"error": {code, message}}`` then a close with
  4000 + the HTTP status the same error would have had (4400 bad ``from``, 4401 token, 4404 unknown
  meeting, no recording yet or deleted, 4416 offset past the edge, 4429 too many listeners) or 1011
  when the recording cannot be read.

Cheap per listener: one watcher per meeting (whatever its number of listeners) polls the recording's
committed length through the storage's recording reader and wakes them; a listener holds no file, Redis
or database connection of its own and reads through the watcher's reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from audioflow.api.context import AppContext
from audioflow.api.ws import CLOSE_BASE, TooManyListeners, authorize, refuse, send_until_gone
from audioflow.core.api_paths import MEETINGS
from audioflow.core.db import queries
from audioflow.core.errors import AudioflowError, BadRequest, NotFound, RangeNotSatisfiable
from audioflow.core.ids import check_meeting_id
from audioflow.core.storage import RecordingReader
from audioflow.core.wav import CANONICAL_HEADER_SIZE, AudioFormat

router = APIRouter(tags=["audio"])
log = logging.getLogger("audioflow.api.live_audio")

EDGE_POLL_S = 0.05  # how often a meeting's watcher looks at its recording's length
PHASE_CHECK_S = 2.0  # how often it asks the database whether the meeting is over, and checks deletion
FRAME_BYTES = 16 * 1024  # PCM per message at most (0.5 s of 16 kHz mono)
MAX_BACK_MS = 60_000
OFFSET = struct.Struct("<Q")
_DIGITS = re.compile(r"[0-9]{1,15}")

State = Literal["open", "completed", "failed", "deleted", "broken"]


@dataclass(eq=False)
class Watch:
    """One meeting's recording, open, and its committed PCM length, shared by all its listeners."""

    meeting_id: str
    reader: RecordingReader
    format: AudioFormat
    length: int  # bytes of PCM data committed (header excluded)
    state: State = "open"
    problem: str = ""
    listeners: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def update(self, length: int, state: State = "open") -> None:
        if length == self.length and state == self.state:
            return
        self.length, self.state = length, state
        self.changed.set()  # wakes everyone waiting on this event; later waiters get a fresh one
        self.changed = asyncio.Event()

    def read(self, position: int, size: int) -> bytes:
        return self.reader.read(CANONICAL_HEADER_SIZE + position, size)

    def committed(self) -> int:
        """Bytes of PCM the recording holds now (the watcher's poll)."""
        return self.reader.committed() - CANONICAL_HEADER_SIZE


def open_recording(ctx: AppContext, meeting_id: str) -> RecordingReader:
    """The meeting's recording, open for reading (NotFound if the meeting or its recording is missing)."""
    with ctx.sessions() as session:
        queries.get_meeting(session, meeting_id)
    try:
        return ctx.storage.open_recording(meeting_id)
    except FileNotFoundError:
        raise NotFound(
            f"meeting {meeting_id!r} has no recording yet (no chunk concatenated)", code="no_recording_yet"
        ) from None


def _open(ctx: AppContext, meeting_id: str) -> Watch:
    reader = open_recording(ctx, meeting_id)
    try:
        return Watch(meeting_id, reader, reader.format, reader.committed() - CANONICAL_HEADER_SIZE)
    except BaseException:
        reader.close()
        raise


def _over(ctx: AppContext, meeting_id: str) -> State:
    with ctx.sessions() as session:
        try:
            phase = queries.meeting_status(session, meeting_id).phase
        except NotFound:
            return "deleted"
    return phase if phase in ("completed", "failed") else "open"


class LiveAudioHub:
    """The gateway's listeners: at most ``max_listeners`` at once (and ``max_per_meeting`` per meeting),
    one :class:`Watch` per meeting. ``setting`` and ``listeners`` name the limits and the listeners in
    refusals."""

    def __init__(
        self,
        max_listeners: int,
        *,
        max_per_meeting: int | None = None,
        setting: str = "AUDIOFLOW_LIVE_AUDIO_MAX_LISTENERS",
        listeners: str = "live-audio listeners",
        poll_s: float = EDGE_POLL_S,
        phase_check_s: float = PHASE_CHECK_S,
    ) -> None:
        self.max_listeners = max_listeners
        self.max_per_meeting = max_per_meeting
        self.setting = setting
        self.noun = listeners
        self.poll_s = poll_s
        self.phase_check_s = phase_check_s
        self.listeners = 0
        self._watches: dict[str, Watch] = {}

    @contextlib.asynccontextmanager
    async def listen(self, ctx: AppContext, meeting_id: str) -> AsyncIterator[Watch]:
        if self.listeners >= self.max_listeners:
            raise TooManyListeners(
                f"this gateway already serves {self.max_listeners} {self.noun} ({self.setting}); retry later"
            )
        self.listeners += 1
        try:
            watch = await self._watch(ctx, meeting_id)
            if self.max_per_meeting is not None and watch.listeners >= self.max_per_meeting:
                raise TooManyListeners(
                    f"meeting {meeting_id!r} already has {self.max_per_meeting} {self.noun} "
                    f"({self.setting}_PER_MEETING); retry later"
                )
            watch.listeners += 1
            try:
                yield watch
            finally:
                watch.listeners -= 1
                if watch.listeners == 0:
                    self._close(watch)
        finally:
            self.listeners -= 1

    async def _watch(self, ctx: AppContext, meeting_id: str) -> Watch:
        current = self._watches.get(meeting_id)
        if current is not None and current.state not in ("deleted", "broken"):
            return current
        opened = await run_in_threadpool(_open, ctx, meeting_id)
        current = self._watches.get(meeting_id)  # another listener may have opened it meanwhile
        if current is not None and current.state not in ("deleted", "broken"):
            opened.reader.close()
            return current
        self._watches[meeting_id] = opened
        opened.task = asyncio.create_task(self._poll(ctx, opened), name=f"live-audio {meeting_id}")
        return opened

    def _close(self, watch: Watch) -> None:
        if watch.task is not None:
            watch.task.cancel()
        if self._watches.get(watch.meeting_id) is watch:
            del self._watches[watch.meeting_id]
        watch.reader.close()

    async def _poll(self, ctx: AppContext, watch: Watch) -> None:
        loop = asyncio.get_running_loop()
        next_check = loop.time()  # at once: a meeting already over ends its listeners without a wait
        try:
            while True:
                watch.update(watch.committed())
                if loop.time() >= next_check:
                    next_check = loop.time() + self.phase_check_s
                    state: State = (
                        "deleted"
                        if not watch.reader.current()
                        else await run_in_threadpool(_over, ctx, watch.meeting_id)
                    )
                    if state != "open":  # final: what it holds now is all it will ever hold
                        watch.update(watch.committed(), state)
                        return
                await asyncio.sleep(self.poll_s)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # whatever it is, the listeners must hear of it
            log.warning("live audio of %s: cannot follow the recording: %s", watch.meeting_id, exc)
            watch.problem = f"the recording cannot be read: {exc}"
            watch.update(watch.length, "broken")


def _start(watch: Watch, start: str, back_ms: str) -> int:
    """Where to start, as a byte offset within the PCM data."""
    align = watch.format.block_align
    if back_ms and start != "live":
        raise BadRequest("back_ms goes only with from=live", code="invalid_back_ms")
    if start == "live":
        if back_ms and not (_DIGITS.fullmatch(back_ms) and int(back_ms) <= MAX_BACK_MS):
            raise BadRequest(
                f"back_ms={back_ms[:20]!r} is not a number of milliseconds from 0 to {MAX_BACK_MS}",
                code="invalid_back_ms",
            )
        back = int(back_ms or 0) * watch.format.sample_rate // 1000 * align
        return max(0, watch.length - back)
    if start == "start":
        return 0
    if not _DIGITS.fullmatch(start):
        raise BadRequest(
            f"from={start[:40]!r} is not live, start or a byte offset within the recording's data",
            code="invalid_from",
        )
    offset = int(start)
    if offset % align:
        raise BadRequest(
            f"from={offset} is not on a frame boundary (frames of {align} bytes)", code="invalid_from"
        )
    if offset > watch.length:
        raise RangeNotSatisfiable(
            f"from={offset} is past the recording's live edge ({watch.length} bytes of audio)",
            code="offset_beyond_edge",
        )
    return offset


async def _send_from(websocket: WebSocket, watch: Watch, position: int) -> State:
    """Send the PCM from ``position`` as it is committed; returns the state that ended it."""
    step = max(watch.format.block_align, FRAME_BYTES // watch.format.block_align * watch.format.block_align)
    while True:
        changed = watch.changed
        if position < watch.length:
            piece = watch.read(position, min(step, watch.length - position))
            if not piece:
                raise OSError(
                    f"the recording ended at {position} bytes of audio; {watch.length} were committed"
                )
            await websocket.send_bytes(OFFSET.pack(position) + piece)
            position += len(piece)
        elif watch.state != "open":
            return watch.state
        else:
            await changed.wait()


@router.websocket(MEETINGS + "/{meeting_id}/live-audio")
async def live_audio(websocket: WebSocket, meeting_id: str) -> None:
    """The recording's PCM from the live edge (or ``from``), pushed as it grows; see the module doc."""
    ctx: AppContext = websocket.app.state.ctx
    hub: LiveAudioHub = websocket.app.state.live_audio
    params = websocket.query_params
    async with contextlib.AsyncExitStack() as stack:
        try:
            authorize(ctx, websocket)
            check_meeting_id(meeting_id)
            watch = await stack.enter_async_context(hub.listen(ctx, meeting_id))
            position = _start(watch, params.get("from") or "live", params.get("back_ms") or "")
        except AudioflowError as exc:
            await refuse(websocket, exc)
            return
        await websocket.accept()
        fmt = watch.format
        await websocket.send_json(
            {
                "type": "start",
                "format": {"sample_rate": fmt.sample_rate, "channels": fmt.channels, "bits": fmt.bits},
                "offset": position,
                "edge": watch.length,
            }
        )
        sender, left = await send_until_gone(websocket, _send_from(websocket, watch, position))
        if left or sender.cancelled():
            return  # the client left
        error = sender.exception()
        with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
            if error is not None or sender.result() == "broken":
                why = watch.problem or f"the recording cannot be read: {error}"
                log.warning("live audio of %s ended: %s", meeting_id, why)
                await websocket.send_json({"error": {"code": "recording_unreadable", "message": why}})
                await websocket.close(code=1011, reason="recording_unreadable")
            elif sender.result() == "deleted":
                gone_msg = f"meeting {meeting_id!r} was deleted"
                await websocket.send_json({"error": {"code": "meeting_deleted", "message": gone_msg}})
                await websocket.close(code=CLOSE_BASE + 404, reason="meeting_deleted")
            else:
                await websocket.send_json({"type": "end", "reason": sender.result()})
                await websocket.close(code=1000, reason=sender.result())
