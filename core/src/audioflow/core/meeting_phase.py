"""The one owner of "the meeting's phase changed" (the ``meeting.phase`` event) and of "the meeting
finished" (the decision that it is completed or failed).

Every writer of the event goes through here: the gateway when a meeting is created or ended and with
its first chunk (inside the ingest pipeline), and both workers after a commit that may have finished it.
The phase itself is never stored: it is derived from rows by ``queries.meeting_status``.
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aioredis
from sqlalchemy.orm import Session

from audioflow.core import announcements, events
from audioflow.core.db import queries
from audioflow.core.db.queries import Phase
from audioflow.core.errors import NotFound
from audioflow.core.event_payloads import MeetingPhase
from audioflow.core.keys import Keys

FINISHED: frozenset[Phase] = frozenset({"completed", "failed"})


EVENT: events.EventType = "meeting.phase"


def phase_event_args(
    keys: Keys, meeting_id: str, phase: Phase, generation: str, maxlen: int
) -> tuple[Any, ...]:
    """The ``EVAL`` arguments announcing ``phase``, for a pipeline (``pipe.eval(*...)``) or a client.

    A finished phase notes that it was announced; any other is held back from then on, so a phase read
    before the meeting finished (``finalizing`` from an end request, say) never lands after it."""
    data = MeetingPhase(phase=phase)
    if phase in FINISHED:
        return events.publish_args(
            keys,
            meeting_id,
            EVENT,
            data,
            generation=generation,
            maxlen=maxlen,
            mark=announcements.FINISHED,
            value=phase,
        )
    return events.publish_args(
        keys, meeting_id, EVENT, data, generation=generation, maxlen=maxlen, unless=announcements.FINISHED
    )


def publish_phase(
    client: redis.Redis, keys: Keys, meeting_id: str, phase: Phase, *, generation: str, maxlen: int
) -> str | None:
    """Announce ``phase`` (sync); the event id, or None when that meeting is gone or it was held back."""
    return events.send(client, phase_event_args(keys, meeting_id, phase, generation, maxlen))


async def apublish_phase(
    client: aioredis.Redis, keys: Keys, meeting_id: str, phase: Phase, *, generation: str, maxlen: int
) -> str | None:
    """Announce ``phase`` (async); see :func:`publish_phase`."""
    return await events.apublish(client, phase_event_args(keys, meeting_id, phase, generation, maxlen))


def finished_phase(session: Session, meeting_id: str, generation: str) -> Phase | None:
    """``completed`` or ``failed`` if that meeting (this generation) has finished; None otherwise.

    Read afresh after the caller's commit, not from a meeting loaded earlier: its end may have been
    committed meanwhile, and then this commit is the one that finished it."""
    meeting = queries.get_live_meeting(session, meeting_id, generation)
    if meeting is None or meeting.ended_at is None:
        return None  # a live meeting cannot have finished: no status queries after every chunk
    try:
        status = queries.meeting_status(session, meeting_id)
    except NotFound:
        return None
    return status.phase if status.ended_at is not None and status.phase in FINISHED else None


def outstanding(
    session: Session, client: redis.Redis, keys: Keys, meeting_id: str
) -> announcements.Outstanding:
    """The events a completed meeting's ``completed`` still waits for (see ``announcements``)."""
    recording = queries.get_recording(session, meeting_id)
    settled = announcements.Settled(
        segments=queries.segment_outcomes(session, meeting_id),
        concatenated_through=recording.concatenated_through if recording else -1,
    )
    return announcements.outstanding(events.all_announced(client, keys, meeting_id), settled)


def announceable(session: Session, client: redis.Redis, keys: Keys, meeting_id: str, phase: Phase) -> bool:
    """Whether ``phase``, just read from the rows, may be announced now: ``completed`` only once every
    event it sums up is out; the one holding it back announces it after that."""
    return phase != "completed" or not outstanding(session, client, keys, meeting_id)
