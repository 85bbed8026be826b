"""Reader API: meetings."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

import redis.exceptions
from fastapi import APIRouter, Query, Response
from sqlalchemy import delete
from starlette.concurrency import run_in_threadpool

from audioflow.api.context import AppContext
from audioflow.api.deps import AdminAuth, Ctx, MeetingId, ReaderAuth
from audioflow.api.schemas import ERROR_RESPONSES, MeetingCreate, MeetingList, MeetingPublic
from audioflow.core import events, meeting_phase
from audioflow.core.api_paths import MEETINGS
from audioflow.core.db import queries
from audioflow.core.db.engine import transaction
from audioflow.core.db.models import Meeting
from audioflow.core.storage import Detached
from audioflow.core.wav import AudioFormat
from audioflow.core.work_item import WorkItem

log = logging.getLogger("audioflow.api.meetings")
router = APIRouter(prefix=MEETINGS, tags=["meetings"], dependencies=[ReaderAuth], responses=ERROR_RESPONSES)


def _status(ctx: AppContext, meeting_id: str) -> MeetingPublic:
    with ctx.sessions() as session:
        return queries.meeting_status(session, meeting_id)


@dataclass(frozen=True)
class _Changed:
    """The status after a change made here, which meeting of that id it is, and whether its phase may be
    announced now (``completed`` waits for the workers' last events: ``meeting_phase.announceable``)."""

    status: MeetingPublic
    generation: str
    announceable: bool


def _changed(ctx: AppContext, meeting_id: str) -> _Changed:
    with ctx.sessions() as session:
        status = queries.meeting_status(session, meeting_id)
        generation = queries.generation(queries.get_meeting(session, meeting_id))
        try:
            ready = meeting_phase.announceable(session, ctx.redis, ctx.keys, meeting_id, status.phase)
        except redis.exceptions.RedisError as exc:
            _not_announced(status, exc)
            ready = False
        return _Changed(status, generation, ready)


def _not_announced(status: MeetingPublic, exc: redis.exceptions.RedisError) -> None:
    log.warning("meeting.phase %s not announced: %s", status.phase, exc, extra={"meeting_id": status.id})


async def _announced(ctx: AppContext, changed: _Changed) -> MeetingPublic:
    """Tell the meeting's followers its phase after a change made here (unless it was deleted since).

    The change is committed by now, so a failure to announce it must not answer 5xx: a retry would find
    the meeting created (409) or change nothing. The event is only missed; the status says the phase."""
    status, generation = changed.status, changed.generation
    if not changed.announceable:
        return status
    try:
        await meeting_phase.apublish_phase(
            ctx.aredis,
            ctx.keys,
            status.id,
            status.phase,
            generation=generation,
            maxlen=ctx.settings.events_maxlen,
        )
    except redis.exceptions.RedisError as exc:
        _not_announced(status, exc)
    return status


# Creating, ending and deleting take the admin token (AUDIOFLOW_ADMIN_TOKEN), never the read token that
# the page's URLs carry.
@router.post("", status_code=201, response_model=MeetingPublic, dependencies=[AdminAuth])
async def create_meeting(body: MeetingCreate, ctx: Ctx) -> MeetingPublic:
    meeting_id = body.id or "m-" + secrets.token_hex(6)
    fmt = AudioFormat(body.format.sample_rate, body.format.channels, body.format.bits)

    def create() -> _Changed:
        with transaction(ctx.sessions) as session:
            queries.create_meeting(session, meeting_id, fmt)
        return _changed(ctx, meeting_id)

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
            return MeetingList(meetings=[queries.meeting_status(session, i) for i in ids])

    return await run_in_threadpool(load)


@router.get("/{meeting_id}", response_model=MeetingPublic)
async def get_meeting(meeting_id: MeetingId, ctx: Ctx) -> MeetingPublic:
    return await run_in_threadpool(_status, ctx, meeting_id)


@router.post("/{meeting_id}/end", response_model=MeetingPublic, dependencies=[AdminAuth])
async def end_meeting(meeting_id: MeetingId, ctx: Ctx) -> MeetingPublic:
    """Mark the meeting ended (idempotent): it finalizes once every chunk is transcribed and recorded."""

    def end() -> _Changed:
        with transaction(ctx.sessions) as session:
            meeting = queries.get_meeting(session, meeting_id)
            newly = meeting.ended_at is None
            if newly:
                meeting.ended_at = datetime.now(UTC)
            last = queries.last_seq(session, meeting_id)
            generation = queries.generation(meeting)
        if newly and last >= 0:
            _transcribe_last_again(ctx, meeting_id, last, generation)
        return _changed(ctx, meeting_id)

    return await _announced(ctx, await run_in_threadpool(end))


def _transcribe_last_again(ctx: AppContext, meeting_id: str, seq: int, generation: str) -> None:
    """The last chunk may have been transcribed while the meeting was live, leaving the words after its
    trailing cut to a successor that now never comes: queue it again (the worker decodes it with its
    tail, or finds that done). Always, not only when its segment is stored: a worker may be decoding it
    right now. Redis down: the reconciler queues it later; the meeting stays finalizing until then."""
    try:
        WorkItem(meeting_id, seq, generation).add_to(ctx.redis, ctx.keys.transcribe)
    except redis.exceptions.RedisError as exc:
        log.warning("last chunk not queued again: %s", exc, extra={"meeting_id": meeting_id, "seq": seq})


@router.delete("/{meeting_id}", status_code=204, dependencies=[AdminAuth])
async def delete_meeting(meeting_id: MeetingId, ctx: Ctx) -> Response:
    """Delete the meeting's rows, files and events, and stop all work on it: work still queued for it is
    dropped by the workers, a concat worker busy with it stops at its next append, whatever is still
    published for it is not kept, and its ``live.wav`` readers and event followers are ended. A meeting
    created later with the same id starts from nothing.

    In this order, so that a failure half-way leaves a meeting that a retry deletes: first its generation
    is marked deleted in Redis (from then on nothing published for it is kept) and its events and marks
    removed; then its rows, and in the same transaction its folder is moved out of the way; then the
    folder is removed."""

    def generation() -> str:
        with ctx.sessions() as session:
            return queries.generation(queries.get_meeting(session, meeting_id))

    def remove(generation: str) -> None:
        detached: Detached | None = None
        try:
            with transaction(ctx.sessions) as session:
                if queries.get_live_meeting(session, meeting_id, generation) is None:
                    return  # a concurrent DELETE got there first (the id may be a new meeting's by now)
                session.execute(delete(Meeting).where(Meeting.id == meeting_id))
                # Uploads signed before now are replays from here on: they must not bring it back.
                queries.mark_deleted(session, meeting_id, datetime.now(UTC))
                # Before the commit, while the deleted row is locked: a new meeting with this id (its
                # creation waits for the commit) never has its files in the folder being removed.
                detached = ctx.storage.detach_meeting(meeting_id)
        except BaseException:
            if detached is not None:
                ctx.storage.reattach_meeting(meeting_id, detached)
            raise
        if detached is not None:
            ctx.storage.purge(detached)

    doomed = await run_in_threadpool(generation)
    await events.aforget(ctx.aredis, ctx.keys, meeting_id, doomed)
    await run_in_threadpool(remove, doomed)
    return Response(status_code=204)
