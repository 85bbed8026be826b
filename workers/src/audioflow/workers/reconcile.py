"""The reconciler: work that Redis lost is enqueued again from what the database says is unfinished.

Redis holds the work queues; the database holds what was accepted. A Redis that restarts empty (or from an
older snapshot) loses queued entries, and nothing else would ever bring those chunks' transcripts back. So
every ``AUDIOFLOW_RECONCILE_INTERVAL_S`` a concat worker (one in the cluster per interval, by a Redis
lock) takes the stored chunks of live meetings without a transcript segment (or, for an ended meeting's
last chunk, with a segment still lacking its tail) that arrived more than one interval ago (younger ones
may still be on their way into the stream), at most ``BATCH``, oldest first; reads the transcribe stream
from a little before the oldest of them; and enqueues again each one whose entry is not there. The
recording needs no help: the concat worker's gap sweep advances every meeting whose chunks are ahead of
its recording straight from the database. Its events need some: ``completed`` waits for every event it
sums up, so a meeting whose events Redis lost gets them made again (``announce_lost``). The same pass
prunes the records that tell replays apart
(``webhook_deliveries``, ``deleted_meetings``) once they are older than twice the signature tolerance.

Idempotent: the handler is idempotent on ``(meeting_id, seq)`` and a chunk whose entry is still in the
stream (undelivered or pending) is left alone, so an entry added twice by a race costs one skipped decode,
never a second segment.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from sqlalchemy import and_, exists, or_, select
from sqlalchemy.orm import Session, aliased, sessionmaker

from audioflow.core import announcements, meeting_phase
from audioflow.core.db import queries
from audioflow.core.db.engine import transaction
from audioflow.core.db.models import Chunk, Meeting, Segment
from audioflow.core.keys import Keys
from audioflow.core.work_item import WorkItem
from audioflow.workers.publisher import Publisher

log = logging.getLogger("audioflow.workers.reconcile")

BATCH = 500  # chunks looked at per pass
SKEW_S = 300.0  # the stream is read from this long before the oldest chunk's arrival (clocks differ)
SCAN_PAGE = 1000
SCAN_LIMIT = 100_000  # entries read per pass at most; beyond, the pass gives up (work is plainly queued)
RECENT_S = 24 * 3600  # ended meetings looked at for a phase never announced (Redis lost its events)

Missing = tuple[str, int, str]  # meeting id, seq, generation


def untranscribed(sessions: sessionmaker[Session], older_than: datetime) -> list[tuple[Missing, datetime]]:
    """Chunks of live meetings with no segment, and last chunks of ended meetings whose segment still
    lacks its tail (``Segment.tail_kept``), received before ``older_than``: oldest first, at most
    ``BATCH``. One outer join on the segments' primary key."""
    later = aliased(Chunk)
    is_last = ~exists().where(later.meeting_id == Chunk.meeting_id, later.seq > Chunk.seq)
    tail_missing = and_(
        Meeting.ended_at.is_not(None), Segment.error.is_(None), Segment.tail_kept.is_(False), is_last
    )
    with sessions() as session:
        rows = session.execute(
            select(Chunk.meeting_id, Chunk.seq, Chunk.received_at, Meeting)
            .join(Meeting, Meeting.id == Chunk.meeting_id)
            .outerjoin(Segment, and_(Segment.meeting_id == Chunk.meeting_id, Segment.seq == Chunk.seq))
            .where(or_(Segment.seq.is_(None), tail_missing), Chunk.received_at < older_than)
            .order_by(Chunk.received_at)
            .limit(BATCH)
        ).all()
        return [((m, s, queries.generation(meeting)), at) for m, s, at, meeting in rows]


def _queued(client: redis.Redis, stream: str, since: datetime) -> set[tuple[str, int]] | None:
    """The ``(meeting_id, seq)`` of every entry in ``stream`` added after ``since`` (None: too many)."""
    found: set[tuple[str, int]] = set()
    low = f"{int(since.timestamp() * 1000)}-0"
    for _ in range(SCAN_LIMIT // SCAN_PAGE):
        page: Any = client.xrange(stream, min=low, count=SCAN_PAGE)
        for _entry_id, fields in page:
            with contextlib.suppress(ValueError):  # not a work item: not ours to count
                item = WorkItem.decode(fields)
                found.add((item.meeting_id, item.seq))
        if len(page) < SCAN_PAGE:
            return found
        low = f"({page[-1][0]}"
    return None


def reconcile(
    client: redis.Redis,
    keys: Keys,
    sessions: sessionmaker[Session],
    *,
    grace_s: float,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> int:
    """One pass over chunks received more than ``grace_s`` ago; returns how many were enqueued again."""
    candidates = untranscribed(sessions, now() - timedelta(seconds=grace_s))
    if not candidates:
        return 0
    oldest = min(at if at.tzinfo else at.replace(tzinfo=UTC) for _, at in candidates)
    queued = _queued(client, keys.transcribe, oldest - timedelta(seconds=SKEW_S))
    if queued is None:
        log.info("reconcile: over %d entries queued; looking again later", SCAN_LIMIT)
        return 0
    missing = [m for m, _ in candidates if (m[0], m[1]) not in queued]
    if missing:
        pipe = client.pipeline(transaction=False)
        for meeting_id, seq, generation in missing:
            WorkItem(meeting_id, seq, generation).add_to(pipe, keys.transcribe)
        pipe.execute()
        log.warning(
            "reconcile: %d stored chunk(s) had no transcription queued (Redis lost them); enqueued again",
            len(missing),
        )
    return len(missing)


def ended_recently(
    sessions: sessionmaker[Session], since: datetime, until: datetime
) -> list[tuple[str, str]]:
    """``(meeting_id, generation)`` of the meetings that ended between ``since`` and ``until``, newest
    first, at most ``BATCH``."""
    with sessions() as session:
        meetings = session.scalars(
            select(Meeting)
            .where(Meeting.ended_at.is_not(None), Meeting.ended_at >= since, Meeting.ended_at <= until)
            .order_by(Meeting.ended_at.desc())
            .limit(BATCH)
        ).all()
        return [(meeting.id, queries.generation(meeting)) for meeting in meetings]


def announce_lost(
    publish: Publisher,
    sessions: sessionmaker[Session],
    *,
    grace_s: float,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> int:
    """Meetings that ended more than ``grace_s`` ago (within ``RECENT_S``), finished in the database, and
    whose phase was never announced: Redis lost the events ``completed`` waits for (see
    ``announcements``), or the announcement itself. Their missing events are made again by the workers
    (their work is enqueued again; each announces once, then the meeting's phase), or, with none
    missing, the phase is announced here. Returns how many meetings were helped."""
    client, keys = publish.client, publish.keys
    meetings = ended_recently(
        sessions, now() - timedelta(seconds=RECENT_S), now() - timedelta(seconds=grace_s)
    )
    pipe = client.pipeline(transaction=False)
    for meeting_id, _ in meetings:
        pipe.hexists(keys.announced(meeting_id), announcements.FINISHED)
    told = pipe.execute() if meetings else []
    helped = 0
    for (meeting_id, generation), finished in zip(meetings, told, strict=True):
        if finished:
            continue
        with sessions() as session:
            phase = meeting_phase.finished_phase(session, meeting_id, generation)
            if phase is None:
                continue  # still finalizing: its workers announce it
            missing = meeting_phase.outstanding(session, client, keys, meeting_id)
            last = queries.last_seq(session, meeting_id)
        helped += 1
        if phase != "completed" or not missing:
            publish.phase(meeting_id, phase, generation=generation)
            continue
        pipe = client.pipeline(transaction=False)
        for seq in missing.seqs:
            WorkItem(meeting_id, seq, generation).add_to(pipe, keys.transcribe)
        if missing.recording:
            WorkItem(meeting_id, last, generation).add_to(pipe, keys.concat)
        pipe.execute()
    if helped:
        log.warning("reconcile: %d finished meeting(s) had events Redis lost; announced again", helped)
    return helped


def prune(sessions: sessionmaker[Session], tolerance_s: float) -> int:
    """Forget seen deliveries and deletions older than twice the signature tolerance (a delivery signed
    that long ago is refused by its timestamp, so they can no longer tell a replay apart)."""
    with transaction(sessions) as session:
        return queries.prune_replay_records(session, datetime.now(UTC) - timedelta(seconds=2 * tolerance_s))


def reconcile_once_per_interval(
    publish: Publisher, sessions: sessionmaker[Session], interval_s: float, tolerance_s: float
) -> int:
    """:func:`reconcile`, :func:`announce_lost` and :func:`prune`, by at most one worker of the cluster
    per interval."""
    client, keys = publish.client, publish.keys
    if not client.set(f"{keys.prefix}reconcile", "1", nx=True, px=max(1, int(interval_s * 1000 * 0.9))):
        return 0
    prune(sessions, tolerance_s)
    announce_lost(publish, sessions, grace_s=interval_s)
    return reconcile(client, keys, sessions, grace_s=interval_s)
