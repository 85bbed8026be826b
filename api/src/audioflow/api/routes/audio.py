"""Reader API: the recording so far (Range requests) and a live chunked WAV that follows its growth."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from audioflow.api.deps import Ctx, MeetingId, ReaderAuth
from audioflow.api.errors import error_response
from audioflow.api.ranges import parse_range
from audioflow.api.routes.live_audio import LiveAudioHub, Watch, open_recording
from audioflow.api.schemas import ERROR_RESPONSES, ErrorEnvelope
from audioflow.core.api_paths import MEETINGS
from audioflow.core.errors import RangeNotSatisfiable
from audioflow.core.storage import RecordingReader
from audioflow.core.wav import streaming_header

router = APIRouter(prefix=MEETINGS, tags=["audio"], dependencies=[ReaderAuth], responses=ERROR_RESPONSES)

PIECE = 64 * 1024
NO_STORE = {"Cache-Control": "no-store"}


async def _file_bytes(reader: RecordingReader, first: int, last: int) -> AsyncIterator[bytes]:
    """Bytes ``first..last`` of the recording the reader holds (a meeting deleted or its id reused
    meanwhile never cuts the answer short or switches recordings under it)."""
    with contextlib.closing(reader):
        position = first
        while position <= last:
            piece = reader.read(position, min(PIECE, last - position + 1))
            if not piece:
                return
            position += len(piece)
            yield piece


@router.get(
    "/{meeting_id}/recording.wav",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"audio/wav": {}}},
        206: {"description": "Partial content (one byte range)", "content": {"audio/wav": {}}},
        416: {"description": "Range not satisfiable", "model": ErrorEnvelope},
    },
)
async def recording_wav(meeting_id: MeetingId, request: Request, ctx: Ctx) -> Response:
    """The consistent prefix of the growing recording (its header's sizes always match what is sent)."""
    reader = await run_in_threadpool(open_recording, ctx, meeting_id)
    try:
        total = reader.committed()
        headers = {"Accept-Ranges": "bytes", **NO_STORE}
        wanted = parse_range(request.headers.get("range"), total)
    except RangeNotSatisfiable as exc:
        reader.close()
        return error_response(416, exc.code, exc.message, {"Content-Range": f"bytes */{total}", **headers})
    except BaseException:
        reader.close()
        raise
    first, last = wanted if wanted else (0, total - 1)
    headers["Content-Length"] = str(last - first + 1)
    status = 200
    if wanted:
        status = 206
        headers["Content-Range"] = f"bytes {first}-{last}/{total}"
    return StreamingResponse(
        _file_bytes(reader, first, last), status_code=status, media_type="audio/wav", headers=headers
    )


async def _follow(watch: Watch, start: Literal["live", "start"], idle_s: float) -> AsyncIterator[bytes]:
    """The chunked body: a streaming header, then the recording's PCM as its meeting's watcher sees it
    committed. It ends, cleanly, once the meeting has completed, failed or been deleted and everything
    committed has been sent, or when nothing new has come for ``idle_s``."""
    yield streaming_header(watch.format)
    align = watch.format.block_align
    # From the start, or from the live edge on a frame boundary so that samples stay aligned.
    position = 0 if start == "start" else watch.length // align * align
    while True:
        changed = watch.changed
        if position < watch.length:
            piece = watch.read(position, min(PIECE, watch.length - position))
            if not piece:
                return  # the file holds less than was committed: end rather than loop
            position += len(piece)
            yield piece
        elif watch.state != "open":
            return
        else:
            try:
                await asyncio.wait_for(changed.wait(), idle_s)
            except TimeoutError:
                return


class _Following(StreamingResponse):
    """A streaming answer that lets go of its listener slot however it ends (even never started)."""

    def __init__(self, content: AsyncIterator[bytes], release: contextlib.AsyncExitStack) -> None:
        super().__init__(content, media_type="audio/wav", headers=NO_STORE)
        self.release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.release.aclose()


@router.get(
    "/{meeting_id}/live.wav",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"audio/wav": {}}},
        429: {"model": ErrorEnvelope, "description": "Too many live followers (too_many_listeners)"},
    },
)
async def live_wav(
    meeting_id: MeetingId,
    request: Request,
    ctx: Ctx,
    from_: Annotated[Literal["live", "start"], Query(alias="from")] = "live",
) -> StreamingResponse:
    """A chunked WAV of unknown length (header sizes 0xFFFFFFFF) from the live edge, or from the start
    with ``?from=start``, following the recording as it grows until the meeting completes. One watcher
    per meeting follows the recording for all its followers; at most ``AUDIOFLOW_MAX_LIVE_FOLLOWERS``
    (and ``…_PER_MEETING``) at once, 429 beyond; the body ends after ``AUDIOFLOW_LIVE_IDLE_TIMEOUT_S``
    without new audio."""
    hub: LiveAudioHub = request.app.state.live_wav
    release = contextlib.AsyncExitStack()
    watch = await release.enter_async_context(hub.listen(ctx, meeting_id))
    return _Following(_follow(watch, from_, ctx.settings.live_idle_timeout_s), release)
