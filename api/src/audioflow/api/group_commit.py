"""Group commit: concurrent requests' chunks share one transaction and one Redis script call.

A request hands its checked chunk to :meth:`GroupCommit.accept` and waits. One flush at a time takes
every chunk waiting (up to ``max_batch``) to a worker thread, which reads what the batch's meetings and
webhook-ids hold, inserts the rows of the new chunks in one statement, stores their files, records their
deliveries and commits, then enqueues all their work in one script call (``events.WriteBatch``). Chunks
arriving meanwhile wait for the next flush, so a batch is as large as the load makes it and an idle
gateway commits one chunk at a time with no added delay.

The promise is unchanged: a request is answered 201 only after its row is committed, its file stored
(and synced with ``AUDIOFLOW_FSYNC``) and its work enqueued. Three cases take this path: a new seq of a
meeting that already has chunks, with an unseen webhook-id (the usual case); the first chunk of a
meeting that does not exist and never did, which creates it (many meetings start at once at the top of
an hour); and a delivery sent again, the same bytes under the same webhook-id (or none) as a chunk
already held, answered as a duplicate (a platform retrying after a timeout sends a burst of them).
Anything else (a conflict, a replay, a refusal, a meeting's other chunks in the batch that creates it),
and every chunk of a batch that failed as a whole, goes the one-by-one way of
:func:`acceptance.accept_chunk`, which decides it as it always did.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass

import anyio.to_thread
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from audioflow.api.acceptance import (
    Accepted,
    Checked,
    accept_chunk,
    add_work,
    check_body,
    log_line,
    page_logs_with_work,
    report,
    within_reach,
)
from audioflow.api.context import AppContext
from audioflow.core import events
from audioflow.core.db import batch_ingest
from audioflow.core.db.batch_ingest import Delivered, HeldMeeting, NewChunk
from audioflow.core.db.queries import AddResult, generation_at
from audioflow.core.ids import check_meeting_id, check_seq
from audioflow.core.metrics import INGEST_BATCH_CHUNKS
from audioflow.core.signing import PresentedSignature

# A body this large is hashed in a thread and goes the one-by-one way: hashing it in the event loop
# would hold every other request up, and batching saves nothing next to its own cost.
MAX_GROUPED_BYTES = 1 << 20


@dataclass(frozen=True)
class Pending:
    meeting_id: str
    seq: int
    body: bytes | memoryview
    checked: Checked
    signature: PresentedSignature | None

    @property
    def webhook_id(self) -> str | None:
        return None if self.signature is None else self.signature.webhook_id

    @property
    def key(self) -> tuple[str, int]:
        return self.meeting_id, self.seq

    def answer(
        self, status: AddResult, generation: str, *, needs_work: bool, first_chunk: bool = False
    ) -> Accepted:
        # Every value below is the gateway's own, checked already: built without validating it again.
        return Accepted.model_construct(
            meeting_id=self.meeting_id,
            seq=self.seq,
            status=status,
            bytes=len(self.body),
            duration_s=self.checked.info.duration_s,
            sha256=self.checked.sha256,
            needs_work=needs_work,
            first_chunk=first_chunk,
            generation=generation,
        )

    def row(self) -> NewChunk:
        return NewChunk(
            meeting_id=self.meeting_id,
            seq=self.seq,
            sha256=self.checked.sha256,
            size_bytes=len(self.body),
            data_bytes=self.checked.info.data_length,
            duration_s=self.checked.info.duration_s,
            webhook_id=self.webhook_id,
        )


class GroupCommit:
    def __init__(self, ctx: AppContext, *, max_batch: int = 128) -> None:
        self._ctx = ctx
        self._max_batch = max_batch
        self._waiting: list[tuple[Pending, asyncio.Future[Accepted | None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def accept(
        self, meeting_id: str, seq: int, body: bytes | memoryview, signature: PresentedSignature | None
    ) -> Accepted:
        """Store one chunk and enqueue its work, as :func:`acceptance.accept_chunk` does."""
        check_meeting_id(meeting_id)
        check_seq(seq)
        if len(body) > MAX_GROUPED_BYTES:
            return await run_in_threadpool(accept_chunk, self._ctx, meeting_id, seq, body, signature)
        checked = check_body(self._ctx.settings, body)
        pending = Pending(meeting_id, seq, body, checked, signature)
        done: asyncio.Future[Accepted | None] = asyncio.get_running_loop().create_future()
        self._waiting.append((pending, done))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        accepted = await done
        if accepted is not None:
            return accepted
        return await run_in_threadpool(accept_chunk, self._ctx, meeting_id, seq, body, signature, checked)

    async def _flush(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[: self._max_batch], self._waiting[self._max_batch :]
                try:
                    results = await anyio.to_thread.run_sync(commit_batch, self._ctx, [p for p, _ in batch])
                except Exception:  # each chunk is then decided on its own, its error included
                    results = [None] * len(batch)
                for (_, done), accepted in zip(batch, results, strict=True):
                    if not done.done():  # its request may have been cancelled (client gone)
                        done.set_result(accepted)
        finally:
            self._flusher = None


def _groupable(ctx: AppContext, pending: Pending, meeting: HeldMeeting | None) -> bool:
    """The usual case: a later chunk of a meeting in the right format, near its highest seq, not a
    replay after a deletion (those are decided one by one)."""
    return (
        meeting is not None
        and meeting.deleted_at is None
        and meeting.highest_seq >= 0
        and meeting.format == pending.checked.info.format
        and within_reach(ctx.settings.max_seq_ahead, pending.seq, meeting.highest_seq)
    )


def _unique_delivery(pending: Pending, seen: dict[str, Delivered], webhook_ids: Counter[str]) -> bool:
    """Its webhook-id, if it has one, is new: not delivered before, and once in this batch."""
    webhook_id = pending.webhook_id
    return webhook_id is None or (webhook_id not in seen and webhook_ids[webhook_id] == 1)


def _create_meetings(
    conn: Connection,
    ctx: AppContext,
    batch: list[Pending],
    held: batch_ingest.Held,
    webhook_ids: Counter[str],
) -> dict[str, int]:
    """Create the meetings whose first chunk this batch holds (one chunk each: the first such in the
    batch), as :func:`acceptance.accept_chunk` would; returns, for each meeting created, the index of
    its first chunk, and adds the meeting to ``held.meetings`` (with no chunk yet)."""
    settings = ctx.settings
    if not settings.auto_create_meetings:
        return {}
    starting: dict[str, int] = {}
    for i, pending in enumerate(batch):
        if (
            pending.meeting_id not in held.meetings
            and pending.meeting_id not in starting
            and within_reach(settings.max_seq_ahead, pending.seq, -1)
            and _unique_delivery(pending, held.seen_webhook_ids, webhook_ids)
        ):
            starting[pending.meeting_id] = i
    if not starting:
        return {}
    formats = {meeting_id: batch[i].checked.info.format for meeting_id, i in starting.items()}
    created = batch_ingest.insert_new_meetings(conn, list(formats.items()))
    for meeting_id, created_at in created.items():
        held.meetings[meeting_id] = HeldMeeting(
            format=formats[meeting_id], created_at=created_at, deleted_at=None, highest_seq=-1
        )
    return {meeting_id: starting[meeting_id] for meeting_id in created}


def _sent_again(pending: Pending, meeting: HeldMeeting | None, seen: dict[str, Delivered]) -> bool:
    """May be a delivery sent again: its meeting is as a new chunk's must be (a replay after a deletion,
    or another format, is decided one by one), and its webhook-id, if it has one, delivered these very
    bytes under this key. Whether the key holds these bytes is read next (:func:`_duplicates`)."""
    if meeting is None or meeting.deleted_at is not None or meeting.format != pending.checked.info.format:
        return False
    webhook_id = pending.webhook_id
    return webhook_id is None or seen.get(webhook_id) == (*pending.key, pending.checked.sha256)


def _duplicates(
    conn: Connection, batch: list[Pending], candidates: list[int], generations: dict[str, str]
) -> dict[int, Accepted]:
    """The candidates whose key holds their very bytes, answered as duplicates (their work enqueued again
    unless done); any other (other bytes: a conflict) is left to be decided one by one."""
    held = batch_ingest.held_chunks(conn, (batch[i].key for i in candidates))
    found = {}
    for i in candidates:
        pending = batch[i]
        chunk = held.get(pending.key)
        if chunk is not None and chunk.sha256 == pending.checked.sha256:
            generation = generations[pending.meeting_id]
            found[i] = pending.answer("duplicate", generation, needs_work=not chunk.work_done)
    return found


def commit_batch(ctx: AppContext, batch: list[Pending]) -> list[Accepted | None]:
    """Commit and enqueue what can be in one go; ``None`` for each chunk to decide one by one."""
    results: list[Accepted | None] = [None] * len(batch)
    with ctx.engine.begin() as conn:
        webhook_ids = Counter(p.webhook_id for p in batch if p.webhook_id is not None)
        held = batch_ingest.held(conn, (p.meeting_id for p in batch), webhook_ids)
        first_chunks = _create_meetings(conn, ctx, batch, held, webhook_ids)
        meetings, seen = held.meetings, held.seen_webhook_ids
        chosen = {batch[i].key: i for i in first_chunks.values()}  # (meeting, seq) -> index in batch
        for i, pending in enumerate(batch):
            if pending.key in chosen or not _groupable(ctx, pending, meetings.get(pending.meeting_id)):
                continue
            if _unique_delivery(pending, seen, webhook_ids):
                chosen[pending.key] = i
        inserted = batch_ingest.insert_new_chunks(conn, [batch[i].row() for i in chosen.values()])
        stored = [chosen[key] for key in inserted]
        # Inside the transaction, after the insert took each key (see acceptance._record); synced together.
        ctx.storage.put_chunks([(batch[i].meeting_id, batch[i].seq, batch[i].body) for i in stored])
        candidates = [
            i
            for i, pending in enumerate(batch)
            if pending.key not in inserted and _sent_again(pending, meetings.get(pending.meeting_id), seen)
        ]
        answered = {batch[i].meeting_id for i in (*stored, *candidates)}  # only these need a generation
        generations = {m: generation_at(meetings[m].created_at) for m in answered}
        duplicates = _duplicates(conn, batch, candidates, generations) if candidates else {}
    firsts = set(first_chunks.values())
    for i in stored:
        generation = generations[batch[i].meeting_id]
        results[i] = batch[i].answer("created", generation, needs_work=True, first_chunk=i in firsts)
    for i, duplicate in duplicates.items():
        results[i] = duplicate
    accepted = [a for a in results if a is not None]
    INGEST_BATCH_CHUNKS.observe(len(accepted))
    with_work = [a for a in accepted if a.needs_work]
    if with_work:
        published = page_logs_with_work()
        work = events.WriteBatch()  # the whole batch's work in one script call, run without interleaving
        for one in with_work:
            add_work(work, ctx, one, log_line(one) if published else None)
        work.execute(ctx.redis)
        report(with_work, published=published)
    report([a for a in accepted if not a.needs_work], published=False)
    return results
