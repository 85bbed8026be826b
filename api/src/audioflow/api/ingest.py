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
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Literal

import sqlalchemy.exc
from redis.typing import EncodableT, FieldT
from sqlalchemy.orm import Session

from audioflow.api.context import AppContext
from audioflow.core import events
from audioflow.core.db import queries
from audioflow.core.db.engine import transaction
from audioflow.core.errors import ChunkTooLong, Conflict, Forbidden, NotFound, SeqTooFarAhead
from audioflow.core.ids import check_meeting_id, check_seq
from audioflow.core.metrics import CHUNKS_INGESTED, INGEST_BYTES
from audioflow.core.settings import Settings
from audioflow.core.signing import PresentedSignature, check_headers
from audioflow.core.wav import parse_wav

log = logging.getLogger("audioflow.api.ingest")

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


@dataclass(frozen=True)
class Accepted:
    meeting_id: str
    seq: int
    status: Literal["created", "duplicate"]
    bytes: int
    duration_s: float
    sha256: str
    needs_work: bool  # enqueue (again): new, or a duplicate whose work is not finished
    first_chunk: bool  # the meeting goes live with it
    generation: str  # which meeting of that id (see queries.generation)


def _record(
    ctx: AppContext, meeting_id: str, seq: int, body: bytes | memoryview, signature: PresentedSignature | None
) -> Accepted:
    info = parse_wav(body)
    if info.duration_s > ctx.settings.max_chunk_s:
        raise ChunkTooLong(
            f"the chunk is {info.duration_s:.1f} s long; at most AUDIOFLOW_MAX_CHUNK_S="
            f"{ctx.settings.max_chunk_s:g} s is accepted (cut it into shorter chunks)"
        )
    sha = hashlib.sha256(body).hexdigest()
    webhook_id = None if signature is None else signature.webhook_id
    with transaction(ctx.sessions) as session:
        if signature is not None:
            _check_not_replayed_after_deletion(session, meeting_id, signature.timestamp)
        seen = queries.seen_delivery(session, webhook_id) if webhook_id is not None else None
        if seen is not None and (seen.meeting_id, seen.seq, seen.sha256) != (meeting_id, seq, sha):
            raise Conflict(
                f"webhook-id {webhook_id!r} was already used for another delivery", code="webhook_id_reused"
            )
        try:
            meeting = queries.get_meeting(session, meeting_id)
        except NotFound:
            if not ctx.settings.auto_create_meetings:
                raise NotFound(
                    f"meeting {meeting_id!r} does not exist (auto-create is off; POST /v1/meetings first)",
                    code="meeting_not_found",
                ) from None
            meeting = queries.create_meeting(session, meeting_id, info.format)
        queries.check_format(meeting, info.format)
        _check_seq_ahead(ctx, session, meeting_id, seq)
        status = queries.add_chunk(
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
            # bytes for this seq waits here and then fails on the key, so it never overwrites the file.
            ctx.storage.put_chunk(meeting_id, seq, body)
            needs_work, first_chunk = True, queries.chunk_count(session, meeting_id) == 1
        else:
            needs_work, first_chunk = _work_unfinished(ctx, meeting_id, seq), False
        if webhook_id is not None and seen is None:
            queries.record_delivery(session, webhook_id, meeting_id, seq, sha)
        generation = queries.generation(meeting)
    return Accepted(
        meeting_id, seq, status, len(body), info.duration_s, sha, needs_work, first_chunk, generation
    )


def _check_not_replayed_after_deletion(session: Session, meeting_id: str, signed_at: int) -> None:
    """A delivery signed before its meeting was deleted is a replay (a producer signs afresh each
    attempt): it must not bring the meeting back, within the signature tolerance or ever."""
    deleted = queries.deleted_at(session, meeting_id)
    if deleted is None:
        return
    deleted = deleted if deleted.tzinfo else deleted.replace(tzinfo=UTC)
    if signed_at < deleted.timestamp():
        raise Conflict(
            f"meeting {meeting_id!r} was deleted at {deleted:%Y-%m-%dT%H:%M:%SZ}; this delivery was signed "
            f"before that (webhook-timestamp {signed_at}), so it is a replay and is refused",
            code="meeting_deleted",
        )


def _check_seq_ahead(ctx: AppContext, session: Session, meeting_id: str, seq: int) -> None:
    """Refuse a seq so far past the highest so far that bridging the seqs between would turn a tiny
    upload into hours of silence and a row per missing seq (issue 13). A seq already held passes."""
    limit = ctx.settings.max_seq_ahead
    highest = queries.highest_seq(session, meeting_id)
    if seq - highest <= limit:
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


def _work_unfinished(ctx: AppContext, meeting_id: str, seq: int) -> bool:
    with ctx.sessions() as session:
        transcribed = queries.get_segment(session, meeting_id, seq) is not None
        recording = queries.get_recording(session, meeting_id)
        in_recording = recording is not None and recording.concatenated_through >= seq
    return not (transcribed and in_recording)


def accept_chunk(
    ctx: AppContext,
    meeting_id: str,
    seq: int,
    body: bytes | memoryview,
    signature: PresentedSignature | None,
) -> Accepted:
    """Store one chunk and enqueue its work; raises typed errors for every bad input."""
    check_meeting_id(meeting_id)
    check_seq(seq)
    for attempt in range(3):
        try:
            accepted = _record(ctx, meeting_id, seq, body, signature)
            break
        except sqlalchemy.exc.IntegrityError:
            # A concurrent request created the same meeting, chunk or delivery first: look again.
            if attempt == 2:
                raise
    if accepted.needs_work:
        _enqueue(ctx, accepted)
    CHUNKS_INGESTED.labels(accepted.status).inc()
    if accepted.status == "created":
        INGEST_BYTES.inc(accepted.bytes)
    log.info(
        "chunk %s (%d bytes, %.2f s)",
        accepted.status,
        accepted.bytes,
        accepted.duration_s,
        extra={"meeting_id": meeting_id, "seq": seq, "generation": accepted.generation},
    )
    return accepted


def _enqueue(ctx: AppContext, accepted: Accepted) -> None:
    work: dict[FieldT, EncodableT] = {
        "meeting_id": accepted.meeting_id,
        "seq": accepted.seq,
        "generation": accepted.generation,  # workers drop it if this meeting was deleted meanwhile
    }
    keys = ctx.keys
    pipe = ctx.redis.pipeline(transaction=True)
    pipe.xadd(keys.transcribe, work)
    pipe.xadd(keys.concat, work)
    if accepted.status == "created":
        publish = functools.partial(
            events.publish_args,
            keys,
            accepted.meeting_id,
            generation=accepted.generation,
            maxlen=ctx.settings.events_maxlen,
        )
        if accepted.first_chunk:
            pipe.eval(*publish("meeting.phase", {"phase": "live"}))
        data = {"seq": accepted.seq, "bytes": accepted.bytes, "duration_s": accepted.duration_s}
        pipe.eval(*publish("chunk.received", data))
    pipe.execute()
