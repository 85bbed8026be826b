"""Reader API: meetings."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response
from sqlalchemy import delete
from starlette.concurrency import run_in_threadpool

from audioflow.api.context import AppContext
from audioflow.api.deps import Ctx, MeetingId, ReaderAuth
from audioflow.api.schemas import ERROR_RESPONSES, MeetingCreate, MeetingList, MeetingPublic
from audioflow.core import events
from audioflow.core.db import queries
from audioflow.core.db.engine import transaction
from audioflow.core.db.models import Meeting
from audioflow.core.wav import AudioFormat

router = APIRouter(
    prefix="/v1/meetings", tags=["meetings"], dependencies=[ReaderAuth], responses=ERROR_RESPONSES
)


def _status(ctx: AppContext, meeting_id: str) -> MeetingPublic:
    with ctx.sessions() as session:
        return MeetingPublic.of(queries.meeting_status(session, meeting_id))


async def _announced(ctx: AppContext, status: MeetingPublic) -> MeetingPublic:
    """Tell the meeting's followers its phase after a change made here."""
    await events.apublish(
        ctx.aredis,
        ctx.keys,
        status.id,
        "meeting.phase",
        {"phase": status.phase},
        maxlen=ctx.settings.events_maxlen,
    )
    return status


@router.post("", status_code=201, response_model=MeetingPublic)
async def create_meeting(body: MeetingCreate, ctx: Ctx) -> MeetingPublic:
    meeting_id = body.id or "m-" + secrets.token_hex(6)
    fmt = AudioFormat(body.format.sample_rate, body.format.channels, body.format.bits)

    def create() -> MeetingPublic:
        with transaction(ctx.sessions) as session:
            queries.create_meeting(session, meeting_id, fmt)
        return _status(ctx, meeting_id)

    return await _announced(ctx, await run_in_threadpool(create))


@router.get("", response_model=MeetingList)
async def list_meetings(
    ctx: Ctx,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,  # more would overflow the SQL integer
) -> MeetingList:
    def load() -> MeetingList:
        with ctx.sessions() as session:
            ids = queries.meeting_ids(session, limit=limit, offset=offset)
            return MeetingList(meetings=[MeetingPublic.of(queries.meeting_status(session, i)) for i in ids])

    return await run_in_threadpool(load)


@router.get("/{meeting_id}", response_model=MeetingPublic)
async def get_meeting(meeting_id: MeetingId, ctx: Ctx) -> MeetingPublic:
    return await run_in_threadpool(_status, ctx, meeting_id)


@router.post("/{meeting_id}/end", response_model=MeetingPublic)
async def end_meeting(meeting_id: MeetingId, ctx: Ctx) -> MeetingPublic:
    """Mark the meeting ended (idempotent): it finalizes once every chunk is transcribed and recorded."""

    def end() -> MeetingPublic:
        with transaction(ctx.sessions) as session:
            meeting = queries.get_meeting(session, meeting_id)
            if meeting.ended_at is None:
                meeting.ended_at = datetime.now(UTC)
        return _status(ctx, meeting_id)

    return await _announced(ctx, await run_in_threadpool(end))


@router.delete("/{meeting_id}", status_code=204)
async def delete_meeting(meeting_id: MeetingId, ctx: Ctx) -> Response:
    """Delete the meeting's rows, files and events. Work still queued for it is dropped by the workers."""

    def remove() -> None:
        with transaction(ctx.sessions) as session:
            queries.get_meeting(session, meeting_id)
            session.execute(delete(Meeting).where(Meeting.id == meeting_id))
        ctx.storage.delete_meeting(meeting_id)

    await run_in_threadpool(remove)
    await ctx.aredis.delete(ctx.keys.events(meeting_id), ctx.keys.announced(meeting_id))
    return Response(status_code=204)
