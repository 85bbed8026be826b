"""Reader API: the recording so far (Range requests) and a live chunked WAV that follows its growth."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, BinaryIO, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from audioflow.api.context import AppContext
from audioflow.api.deps import Ctx, MeetingId, ReaderAuth
from audioflow.api.errors import error_response
from audioflow.api.ranges import parse_range
from audioflow.api.schemas import ERROR_RESPONSES, ErrorEnvelope
from audioflow.core.db import queries
from audioflow.core.errors import NotFound, RangeNotSatisfiable
from audioflow.core.recording import same_file, snapshot_length
from audioflow.core.wav import streaming_header

router = APIRouter(
    prefix="/v1/meetings", tags=["audio"], dependencies=[ReaderAuth], responses=ERROR_RESPONSES
)

PIECE = 64 * 1024
POLL_S = 0.2
PHASE_CHECK_S = 2.0
NO_STORE = {"Cache-Control": "no-store"}


def _recording(ctx: AppContext, meeting_id: str) -> tuple[Path, BinaryIO]:
    """The recording's path and the file, open: a reader keeps the file it opened, so a meeting deleted
    (or its id reused) while it reads never cuts its answer short or switches files under it."""
    with ctx.sessions() as session:
        queries.get_meeting(session, meeting_id)
    path = ctx.storage.recording_path(meeting_id)
    try:
        return path, path.open("rb")
    except FileNotFoundError:
        raise NotFound(
            f"meeting {meeting_id!r} has no recording yet (no chunk concatenated)", code="no_recording_yet"
        ) from None


async def _file_bytes(handle: BinaryIO, first: int, last: int) -> AsyncIterator[bytes]:
    with handle:
        handle.seek(first)
        remaining = last - first + 1
        while remaining > 0:
            piece = handle.read(min(PIECE, remaining))
            if not piece:
                return
            remaining -= len(piece)
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
    _, handle = await run_in_threadpool(_recording, ctx, meeting_id)
    try:
        _, total = snapshot_length(handle.fileno())
        headers = {"Accept-Ranges": "bytes", **NO_STORE}
        wanted = parse_range(request.headers.get("range"), total)
    except RangeNotSatisfiable as exc:
        handle.close()
        return error_response(416, exc.code, exc.message, {"Content-Range": f"bytes */{total}", **headers})
    except BaseException:
        handle.close()
        raise
    first, last = wanted if wanted else (0, total - 1)
    headers["Content-Length"] = str(last - first + 1)
    status = 200
    if wanted:
        status = 206
        headers["Content-Range"] = f"bytes {first}-{last}/{total}"
    return StreamingResponse(
        _file_bytes(handle, first, last), status_code=status, media_type="audio/wav", headers=headers
    )


async def _follow(
    ctx: AppContext, meeting_id: str, path: Path, handle: BinaryIO, start: Literal["live", "start"]
) -> AsyncIterator[bytes]:
    """Follow the file open as ``handle``. The body ends, cleanly, once the meeting has completed or
    failed, or once ``path`` no longer names that file (the meeting was deleted), after everything that
    was committed to it has been sent."""
    with handle:
        fd = handle.fileno()
        fmt, length = snapshot_length(fd)
        yield streaming_header(fmt)
        # From the start, or from the live edge on a frame boundary so that samples stay aligned.
        position = 44 if start == "start" else 44 + (length - 44) // fmt.block_align * fmt.block_align
        loop = asyncio.get_running_loop()
        next_phase_check = loop.time() + PHASE_CHECK_S
        while True:
            _, length = snapshot_length(fd)
            if length > position:
                handle.seek(position)
                piece = handle.read(min(PIECE, length - position))
                position += len(piece)
                yield piece
                continue
            if not same_file(path, fd):
                return  # deleted: everything it held has been sent
            if loop.time() >= next_phase_check:
                next_phase_check = loop.time() + PHASE_CHECK_S
                if await run_in_threadpool(_finished, ctx, meeting_id):
                    _, length = snapshot_length(fd)
                    if length <= position:
                        return
                    continue
            await asyncio.sleep(POLL_S)


def _finished(ctx: AppContext, meeting_id: str) -> bool:
    with ctx.sessions() as session:
        try:
            return queries.meeting_status(session, meeting_id).phase in ("completed", "failed")
        except NotFound:
            return True


@router.get(
    "/{meeting_id}/live.wav",
    response_class=StreamingResponse,
    responses={200: {"content": {"audio/wav": {}}}},
)
async def live_wav(
    meeting_id: MeetingId, ctx: Ctx, from_: Annotated[Literal["live", "start"], Query(alias="from")] = "live"
) -> StreamingResponse:
    """A chunked WAV of unknown length (header sizes 0xFFFFFFFF) from the live edge, or from the start
    with ``?from=start``, following the recording as it grows until the meeting completes."""
    path, handle = await run_in_threadpool(_recording, ctx, meeting_id)
    return StreamingResponse(
        _follow(ctx, meeting_id, path, handle, from_), media_type="audio/wav", headers=NO_STORE
    )
