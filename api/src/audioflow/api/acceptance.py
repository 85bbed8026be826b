"""Accepting a chunk: verify, validate, store, record, enqueue. Shared by both ingest routes.

Order matters for "nothing lost": the row is inserted (which takes the key's lock), the file written,
the transaction committed, and only then is work enqueued. A chunk stored but not enqueued (Redis down)
is answered 503; the producer's retry finds an exact duplicate and enqueues it again. Handlers
downstream are idempotent on (meeting_id, seq), so enqueueing twice is harmless.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy.exc
from pydantic import ConfigDict
from sqlalchemy.orm import Session

from audioflow.api.context import AppContext
from audioflow.api.schemas import ChunkAccepted
from audioflow.core import events
from audioflow.core.db import batch_ingest, queries
from audioflow.core.db.engine import transaction
from audioflow.core.errors import ChunkTooLong, Conflict, Forbidden, NotFound, SeqTooFarAhead
from audioflow.core.event_payloads import ChunkReceived, LogLine
from audioflow.core.ids import check_meeting_id, check_seq
from audioflow.core.meeting_phase import phase_event_args
from audioflow.core.metrics import CHUNKS_INGESTED, INGEST_BYTES
from audioflow.core.settings import Settings
from audioflow.core.signing import PresentedSignature, check_headers
from audioflow.core.wav import WavInfo, parse_wav
from audioflow.core.work_item import WorkItem

log = logging.getLogger("audioflow.api.acceptance")
LOG_COMPONENT = "api"  # the gateway's name in its meetings' log events (see MeetingLogForwarder)

WAV_CONTENT_TYPES = frozenset({"audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave"})


def signing_secret(settings: Settings) -> str:
    secret = settings.webhook_secret
    if secret is None:
        raise Forbidden(
            "ingest is disabled: the server has no AUDIOFLOW_WEBHOOK_SECRET", code="ingest_disabled"
        )
    return secret.get_secret_value()


def check_signature_headers(settings: Settings, headers: Mapping[str, str]) -> None:
    """What can be refused before a chunk's body is read: ingest disabled, signature headers missing,
    malformed or stale."""
    signing_secret(settings)
    check_headers(headers, tolerance_s=settings.signature_tolerance_s)


class Accepted(ChunkAccepted):
    """A stored chunk: the answer's fields, and what the gateway does next with it. Served as a
    ``ChunkAccepted``, whose fields alone are sent."""

    model_config = ConfigDict(frozen=True)

    needs_work: bool  # enqueue (again): new, or a duplicate whose work is not finished
    first_chunk: bool  # the meeting goes live with it
    generation: str  # which meeting of that id (see queries.generation)


@dataclass(frozen=True)
class Checked:
    """A chunk's body, valid as a WAV within the limits, and its hash: what is known before the database."""

    info: WavInfo
    sha256: str


def check_body(settings: Settings, body: bytes | memoryview) -> Checked:
    info = parse_wav(body)
    if info.duration_s > settings.max_chunk_s:
        raise ChunkTooLong(
            f"the chunk is {info.duration_s:.1f} s long; at most AUDIOFLOW_MAX_CHUNK_S="
            f"{settings.max_chunk_s:g} s is accepted (cut it into shorter chunks)"
        )
    return Checked(info, hashlib.sha256(body).hexdigest())


def _record(
    ctx: AppContext,
    meeting_id: str,
    seq: int,
    body: bytes | memoryview,
    checked: Checked,
    signature: PresentedSignature | None,
) -> Accepted:
    info, sha = checked.info, checked.sha256
    webhook_id = None if signature is None else signature.webhook_id
    settings = ctx.settings
    with transaction(ctx.sessions) as session:
        # Round trips: this read, the insert, the delivery's insert, the commit (plus the meeting's
        # creation with its first chunk); no COUNT(*), no lookup per table.
        view = queries.ingest_view(session, meeting_id, webhook_id)
        if signature is not None:
            _check_not_replayed_after_deletion(meeting_id, view.deleted_at, signature.timestamp)
        if view.seen is not None and view.seen != (meeting_id, seq, sha):
            raise Conflict(
                f"webhook-id {webhook_id!r} was already used for another delivery", code="webhook_id_reused"
            )
        if view.format is None or view.created_at is None:
            if not settings.auto_create_meetings:
                raise NotFound(
                    f"meeting {meeting_id!r} does not exist (auto-create is off; POST /v1/meetings first)",
                    code="meeting_not_found",
                )
            created_at, fmt = queries.create_meeting(session, meeting_id, info.format).created_at, info.format
        else:
            created_at, fmt = view.created_at, view.format
        queries.check_format(meeting_id, fmt, info.format)
        _check_seq_ahead(settings.max_seq_ahead, meeting_id, seq, view.highest_seq)
        status = queries.insert_chunk(
            session,
            meeting_id,
            seq,
            sha256=sha,
            size_bytes=len(body),
            data_bytes=info.data_length,
            duration_s=info.duration_s,
        )
        if status == "created":
            # Inside the transaction, after the insert took the key: a concurrent sender of other
            # bytes for this seq waits on the key and then finds it held, so it never overwrites the file.
            ctx.storage.put_chunk(meeting_id, seq, body)
            needs_work, first_chunk = True, view.highest_seq < 0
        else:
            needs_work, first_chunk = _work_unfinished(session, meeting_id, seq), False
        if webhook_id is not None and view.seen is None:
            queries.record_delivery(session, webhook_id, meeting_id, seq, sha)
    return Accepted(
        meeting_id=meeting_id,
        seq=seq,
        status=status,
        bytes=len(body),
        duration_s=info.duration_s,
        sha256=sha,
        needs_work=needs_work,
        first_chunk=first_chunk,
        generation=queries.generation_at(created_at),
    )


def _check_not_replayed_after_deletion(meeting_id: str, deleted: datetime | None, signed_at: int) -> None:
    """A delivery signed before its meeting was deleted is a replay (a producer signs afresh each
    attempt): it must not bring the meeting back, within the signature tolerance or ever."""
    if deleted is None:
        return
    deleted = deleted if deleted.tzinfo else deleted.replace(tzinfo=UTC)
    if signed_at < deleted.timestamp():
        raise Conflict(
            f"meeting {meeting_id!r} was deleted at {deleted:%Y-%m-%dT%H:%M:%SZ}; this delivery was signed "
            f"before that (webhook-timestamp {signed_at}), so it is a replay and is refused",
            code="meeting_deleted",
        )


def within_reach(limit: int, seq: int, highest: int) -> bool:
    """``seq`` is at most ``limit`` past ``highest``, the meeting's highest seq so far (-1 with no chunk
    yet): the one rule for how far ahead a chunk may be, for both ways of accepting it."""
    return seq - highest <= limit


def _check_seq_ahead(limit: int, meeting_id: str, seq: int, highest: int) -> None:
    """Refuse a seq so far past the highest so far that bridging the seqs between would turn a tiny
    upload into hours of silence and a row per missing seq (issue 13). A seq already held passes."""
    if within_reach(limit, seq, highest):
        return
    if highest < 0:
        raise SeqTooFarAhead(
            f"seq {seq} cannot open meeting {meeting_id!r}: it has no chunk yet, so its seq must be below "
            f"{limit} (AUDIOFLOW_MAX_SEQ_AHEAD)"
        )
    raise SeqTooFarAhead(
        f"seq {seq} is {seq - highest} past the highest seq of meeting {meeting_id!r} so far ({highest}); "
        f"at most AUDIOFLOW_MAX_SEQ_AHEAD={limit} ahead is accepted"
    )


def _work_unfinished(session: Session, meeting_id: str, seq: int) -> bool:
    """Read in the caller's transaction, on its connection: a second checkout while holding one let as
    many concurrent duplicates as the pool has connections hold them all and wait for one more, and the
    gateway stood still until the pool's timeout."""
    held = batch_ingest.held_chunks(session.connection(), [(meeting_id, seq)])
    return not held[meeting_id, seq].work_done


def accept_chunk(
    ctx: AppContext,
    meeting_id: str,
    seq: int,
    body: bytes | memoryview,
    signature: PresentedSignature | None,
    checked: Checked | None = None,
) -> Accepted:
    """Store one chunk and enqueue its work; raises typed errors for every bad input. ``checked``: its
    body's :func:`check_body`, when the caller has it already."""
    check_meeting_id(meeting_id)
    check_seq(seq)
    checked = checked or check_body(ctx.settings, body)
    for attempt in range(3):
        try:
            accepted = _record(ctx, meeting_id, seq, body, checked, signature)
            break
        except (sqlalchemy.exc.IntegrityError, Conflict) as exc:
            # A concurrent request created the same meeting, chunk or delivery first (a meeting's first
            # chunks race to create it: the loser finds it created after its read): look again.
            retry = not isinstance(exc, Conflict) or exc.code == "meeting_exists"
            if attempt == 2 or not retry:
                raise
    return announce(ctx, accepted)


def log_line(accepted: Accepted) -> str:
    return f"chunk {accepted.status} ({accepted.bytes} bytes, {accepted.duration_s:.2f} s)"


def page_logs_with_work() -> bool:
    """The page's log event for an accepted chunk's line rides in the work's Redis script call, not a write
    of its own (when the line is logged at all)."""
    return log.isEnabledFor(logging.INFO)


def announce(ctx: AppContext, accepted: Accepted) -> Accepted:
    """Enqueue an accepted chunk's work if it needs it, count it and log it."""
    with_work = accepted.needs_work and page_logs_with_work()
    if accepted.needs_work:
        batch = events.WriteBatch()
        add_work(batch, ctx, accepted, log_line(accepted) if with_work else None)
        batch.execute(ctx.redis)
    report([accepted], published=with_work)
    return accepted


def report(accepted: Sequence[Accepted], *, published: bool) -> None:
    """Count and log accepted chunks (after their work is enqueued): the counters once per status, so a
    group commit's chunks take one increment, a line each."""
    for status, count in Counter(one.status for one in accepted).items():
        CHUNKS_INGESTED.labels(status).inc(count)
    if created_bytes := sum(one.bytes for one in accepted if one.status == "created"):
        INGEST_BYTES.inc(created_bytes)
    for one in accepted:
        extra = {
            "meeting_id": one.meeting_id,
            "seq": one.seq,
            "generation": one.generation,
            "published": published,
        }
        log.info("%s", log_line(one), extra=extra)


def add_work(batch: events.WriteBatch, ctx: AppContext, accepted: Accepted, line: str | None) -> None:
    """Add an accepted chunk's work items and events (and its page log ``line``) to ``batch``."""
    work = WorkItem(accepted.meeting_id, accepted.seq, accepted.generation)
    keys = ctx.keys
    work.add_to(batch, keys.transcribe)
    work.add_to(batch, keys.concat)
    publish = functools.partial(
        events.publish_args,
        keys,
        accepted.meeting_id,
        generation=accepted.generation,
        maxlen=ctx.settings.events_maxlen,
    )
    if accepted.status == "created":
        if accepted.first_chunk:
            maxlen = ctx.settings.events_maxlen
            batch.publish(phase_event_args(keys, accepted.meeting_id, "live", accepted.generation, maxlen))
        data = ChunkReceived(seq=accepted.seq, bytes=accepted.bytes, duration_s=accepted.duration_s)
        batch.publish(publish("chunk.received", data))
    if line is not None:
        page_line = LogLine(level="info", component=LOG_COMPONENT, message=line, seq=accepted.seq)
        batch.publish(publish("log", page_line))
