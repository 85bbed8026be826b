"""Section 2, pipeline overhead: what the system adds around the decoder, per chunk.

A stack with one processing and one concat worker. Real speech chunks (the fixture cut into 5 s WAVs)
are uploaded one at a time, each only after the previous chunk's events arrived, so nothing queues: a
figure is the path's own latency, not a backlog. A thread follows the meeting's WebSocket and stamps
every event on arrival, on the same clock as the uploads.

- transcribed: upload accepted (the 201 is back) → ``chunk.transcribed`` on the WebSocket, minus the
  decoder's own time for that chunk, which the processing worker records per chunk in
  ``segments.decode_s`` (the time around the engine's ``transcribe`` call, overlap included).
- extended: the later of (chunk accepted, predecessor in the recording: the ``recording.extended`` that
  covers it arrived) → the ``recording.extended`` that covers the chunk.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from audioflow.core.db.engine import make_engine
from audioflow.core.db.models import Segment
from audioflow.workers.simulate import cut_chunks, load_speech
from bench.common import BenchConfig, Section, Spread, Unmeasured, md_table, percentile, save_plot
from bench.env import bench_stack
from tests.integration.stack import Stack

CHUNK_S = 5.0  # the full run's chunk length; the tiny one uses 1 s chunks (its figures are not results)
TINY_CHUNK_S = 1.0
PAUSE_S = 0.1  # between one chunk's last event and the next upload
EVENT_TIMEOUT_S = 60.0
QUANTILES = (50, 95, 99)


class Listener:
    """Follows one meeting's WebSocket in a thread; ``wait`` blocks until a condition on the events holds."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.events: list[tuple[float, dict[str, Any]]] = []  # (arrival, event)
        self.changed = threading.Condition()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._follow, name="bench-ws", daemon=True)
        self.thread.start()

    def _follow(self) -> None:
        try:
            for message in self.ws:
                arrived = time.monotonic()
                with self.changed:
                    self.events.append((arrived, json.loads(message)))
                    self.changed.notify_all()
        except Exception as exc:  # the socket closing at the end is also this
            self.error = exc
        with self.changed:
            self.changed.notify_all()

    def first(self, kind: str, covers: int) -> float | None:
        """Arrival of the first ``kind`` event for ``covers``: ``chunk.transcribed`` of that seq, or the
        ``recording.extended`` whose ``concatenated_through`` reaches it."""
        for arrived, event in self.events:
            if event["type"] != kind:
                continue
            data = event["data"]
            if (kind == "chunk.transcribed" and data["seq"] == covers) or (
                kind == "recording.extended" and data["concatenated_through"] >= covers
            ):
                return arrived
        return None

    def wait(self, seq: int, timeout: float) -> tuple[float, float]:
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                transcribed = self.first("chunk.transcribed", seq)
                extended = self.first("recording.extended", seq)
                if transcribed is not None and extended is not None:
                    return transcribed, extended
                failed = [e for _, e in self.events if e["type"] == "chunk.failed"]
                if failed:
                    raise Unmeasured(f"chunk failed in the pipeline: {failed[0]['data']}")
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.error is not None and not self.thread.is_alive()):
                    raise Unmeasured(f"no events for seq {seq} within {timeout:.0f} s (socket: {self.error})")
                self.changed.wait(remaining)


@dataclass(frozen=True)
class Sample:
    seq: int
    decode_s: float
    transcribed_s: float  # accepted → chunk.transcribed
    extended_s: float  # max(accepted, predecessor recorded) → recording.extended

    @property
    def overhead_s(self) -> float:
        return self.transcribed_s - self.decode_s


@contextlib.contextmanager
def _following(stack: Stack, meeting_id: str) -> Iterator[Listener]:
    response = stack.post("/v1/meetings", json={"id": meeting_id})
    if response.status_code != 201:
        raise Unmeasured(f"creating meeting {meeting_id}: HTTP {response.status_code} {response.text[:200]}")
    with stack.events(meeting_id) as ws:
        yield Listener(ws)


def follow_meeting(stack: Stack, meeting_id: str, chunks: list[bytes]) -> list[Sample]:
    """Create the meeting, upload ``chunks`` one at a time (each after the last one's events), time them."""
    accepted: list[float] = []
    arrivals: list[tuple[float, float]] = []
    with _following(stack, meeting_id) as listener:
        for seq, body in enumerate(chunks):
            response = stack.put_chunk(meeting_id, seq, body)
            accepted.append(time.monotonic())
            if response.status_code != 201:
                raise Unmeasured(
                    f"upload {meeting_id}/{seq}: HTTP {response.status_code} {response.text[:200]}"
                )
            arrivals.append(listener.wait(seq, EVENT_TIMEOUT_S))
            time.sleep(PAUSE_S)
    decode = _decode_times(stack, meeting_id)
    samples = []
    for seq, ((transcribed, extended), sent) in enumerate(zip(arrivals, accepted, strict=True)):
        if seq not in decode:
            raise Unmeasured(f"no segments.decode_s for {meeting_id}/{seq}")
        ready = sent if seq == 0 else max(sent, arrivals[seq - 1][1])
        samples.append(Sample(seq, decode[seq], transcribed - sent, extended - ready))
    return samples


def _decode_times(stack: Stack, meeting_id: str) -> dict[int, float]:
    engine = make_engine(stack.env["DATABASE_URL"])
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(Segment.seq, Segment.decode_s).where(Segment.meeting_id == meeting_id)
            ).all()
    finally:
        engine.dispose()
    return {int(seq): float(decode_s) for seq, decode_s in rows}


def run(cfg: BenchConfig) -> Section:
    fmt, pcm = load_speech()
    chunk_s = TINY_CHUNK_S if cfg.tiny else CHUNK_S
    chunks = cut_chunks(fmt, pcm, chunk_s, 2 if cfg.tiny else None)
    full = 44 + round(chunk_s * fmt.sample_rate) * fmt.block_align
    chunks = [c for c in chunks if len(c) == full]  # the fixture's short tail is left out
    runs: list[list[Sample]] = []
    with bench_stack(cfg, "pipeline") as stack:
        stack.start_worker("processing")  # first: loading the speech model is the slowest start
        stack.start_worker("concat")
        stack.start_api()
        follow_meeting(stack, f"warm-{uuid.uuid4().hex[:8]}", chunks[:1])  # model loaded, connections open
        for repeat in range(cfg.repeats):
            runs.append(follow_meeting(stack, f"pipe-{repeat}-{uuid.uuid4().hex[:8]}", chunks))
    return _report(cfg, runs, len(chunks), chunk_s)


def _q(samples: list[Sample], attr: str, q: float) -> float:
    return percentile([getattr(s, attr) for s in samples], q) * 1000


def _report(cfg: BenchConfig, runs: list[list[Sample]], n_chunks: int, chunk_s: float) -> Section:
    def spread(attr: str, q: float) -> Spread:
        return Spread.of([_q(run, attr, q) for run in runs])

    rows = []
    for label, attr in (
        ("decoder's own time (`segments.decode_s`)", "decode_s"),
        ("accepted → `chunk.transcribed`", "transcribed_s"),
        ("**transcription overhead** (the above minus the decoder)", "overhead_s"),
        ("**predecessor recorded → `recording.extended`**", "extended_s"),
    ):
        rows.append([label, *(spread(attr, q).fmt(1) for q in QUANTILES)])
    table = md_table(["per chunk, ms", *(f"p{q}" for q in QUANTILES)], rows)

    def ratio(top: str, q: float, bottom: str | None) -> Spread:
        return Spread.of(
            [_q(run, top, q) / (_q(run, bottom, 50) if bottom else chunk_s * 1000) for run in runs]
        )

    ratios = md_table(
        ["ratio", "median (min-max)"],
        [
            ["transcription overhead p50 / decoder time p50", ratio("overhead_s", 50, "decode_s").fmt(3)],
            ["transcription overhead p99 / decoder time p50", ratio("overhead_s", 99, "decode_s").fmt(3)],
            [
                f"transcription overhead p99 / chunk length ({chunk_s:g} s)",
                ratio("overhead_s", 99, None).fmt(4),
            ],
            [
                f"accepted → transcribed p99 / chunk length ({chunk_s:g} s)",
                ratio("transcribed_s", 99, None).fmt(3),
            ],
            [f"recording.extended p99 / chunk length ({chunk_s:g} s)", ratio("extended_s", 99, None).fmt(4)],
        ],
    )
    summary = {
        "transcription overhead p50/p99 ms": f"{spread('overhead_s', 50).fmt(1)} / "
        f"{spread('overhead_s', 99).fmt(1)}",
        "overhead / decoder time (p50)": ratio("overhead_s", 50, "decode_s").fmt(3),
        "recording.extended p50/p99 ms": f"{spread('extended_s', 50).fmt(1)} / "
        f"{spread('extended_s', 99).fmt(1)}",
    }
    markdown = "\n\n".join(
        [
            __doc__.split("\n\n", 1)[1].strip(),
            f"{n_chunks} chunks of {chunk_s:g} s per meeting (the 95 s speech fixture), one meeting per "
            f"repeat, {cfg.repeats} repeat(s) after an untimed warm-up meeting; pocketsphinx, overlap "
            f"{1.0:g} s (the default). Percentiles are taken within a repeat ({n_chunks} chunks, so p95 "
            "and p99 sit at the slowest one or two chunks), then median (min-max) over the repeats. The "
            "upload client and WebSocket follower share the 2 cores with the stack.",
            table,
            "Ratios against the decoder's time in the same run, and against the chunk length (the limit: "
            "a live pipeline must finish each chunk within one chunk's time to keep up):",
            ratios,
            _plot(cfg, runs, chunk_s),
        ]
    )
    return Section("Pipeline overhead", markdown, summary)


def _plot(cfg: BenchConfig, runs: list[list[Sample]], chunk_s: float) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    every = [s for run in runs for s in run]
    for attr, label in (
        ("decode_s", "decoder's own time"),
        ("overhead_s", "transcription overhead"),
        ("extended_s", "predecessor recorded → recording.extended"),
    ):
        values = sorted(getattr(s, attr) * 1000 for s in every)
        ys = [(i + 1) / len(values) for i in range(len(values))]
        ax.step(values, ys, where="post", label=label)
    ax.set_xscale("symlog", linthresh=1.0)  # log above 1 ms; a negative value would still show
    ax.set_xlabel("ms per chunk (log above 1 ms)")
    ax.set_ylabel("fraction of chunks ≤ x")
    ax.set_title(f"Per-chunk latency, all repeats pooled ({len(every)} chunks of {chunk_s:g} s)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return save_plot(cfg, fig, "pipeline_latency_cdf")
