"""Section 3, concat cost growth: the cost of one append as a recording grows from 1 min to 10 h.

Three ways of appending one chunk (1 s or 10 s of 16 kHz mono 16-bit) to a recording of a given length:

- **appender**: ``RecordingFile.append`` in this process (``locked_recording``, ``fsync=True`` as in
  production): the write of the PCM, the index record and the header patch, with their fdatasyncs;
- **concat worker**: a real ``audioflow worker concat`` process on PostgreSQL and Redis, from the
  work entry's XADD to its ``recording.extended`` event (database reads, lock, open, append, mirror,
  event), the chunk staged beforehand as the gateway would;
- **naive**: the baseline, rewriting the whole file per append (copy old + chunk into a new file,
  fsync, rename).

Recordings are grown to each length by real appends with fsync off (see ``concat_stage``), the
database gets a row per chunk, then the timed appends run at that length.
"""

from __future__ import annotations

import shutil
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import redis

from audioflow.core.db.engine import make_engine, make_sessionmaker
from audioflow.core.keys import Keys
from audioflow.core.recording import locked_recording
from audioflow.core.storage import LocalStorage
from bench.common import BenchConfig, Section, Spread, Unmeasured, md_table, save_plot
from bench.concat_stage import Audio, Io, Meeting, event_cursor, memory, naive_append, worker_append
from bench.env import bench_stack
from bench.stt_load import production_env

LENGTHS_S = (60.0, 3600.0, 36000.0)
TINY_LENGTHS_S = (10.0, 60.0)
REFERENCE_S = 60.0  # the baseline recording every timed append is paired with
CHUNKS_S = (1.0, 10.0)
APPENDS_PER_REPEAT = 7  # appender and worker: a few appends per repeat, every one a sample
TINY_APPENDS = 2
DISK_NEEDED = 3 * 1_152_000_000 + 2**30  # a 10 h recording, the naive copy and its temporary, + 1 GiB
METHODS = ("appender", "appender_nosync", "worker", "naive")


@dataclass
class Point:
    chunk_s: float
    length_s: float
    # method -> seconds per append at this length, and on the reference recording at the same moments
    times: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in METHODS})
    reference: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in METHODS})
    io: dict[str, tuple[Io, int]] = field(default_factory=dict)  # method -> (bytes written, audio bytes)
    rss: int = 0
    peak: int = 0

    def median(self, method: str) -> float:
        return Spread.of(self.times[method]).median

    def vs_reference(self, method: str) -> float:
        return self.median(method) / Spread.of(self.reference[method]).median


def _label(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:g} h"
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


def _appender(long: Meeting, ref: Meeting, point: Point, count: int) -> None:
    """Pairs of appends, one to the long recording and one to the reference, with fsync and without."""
    pcm = long.audio.pcm(point.chunk_s, 1)
    spent, firsts = Io(0, 0), []
    for fsync, method in ((True, "appender"), (False, "appender_nosync")):
        with (
            locked_recording(long.path, long.fmt, fsync=fsync) as rec,
            locked_recording(ref.path, ref.fmt, fsync=fsync) as base,
        ):
            firsts.append((rec.next_seq, base.next_seq))
            for i in range(count):
                pair = [(rec, point.times[method]), (base, point.reference[method])]
                for recording, samples in pair if i % 2 == 0 else pair[::-1]:  # neither always goes first
                    before = Io.of()
                    started = time.perf_counter()
                    recording.append(recording.next_seq, pcm)
                    samples.append(time.perf_counter() - started)
                    if fsync and recording is rec:
                        spent += Io.of() - before
            ends = (rec.next_seq, base.next_seq)
    point.io["appender"] = (spent, count * len(pcm))
    long.add_rows(range(firsts[0][0], ends[0]), len(pcm))
    ref.add_rows(range(firsts[0][1], ends[1]), len(pcm))


def _worker(
    long: Meeting, ref: Meeting, point: Point, count: int, client: redis.Redis, keys: Keys, pid: int
) -> None:
    """Pairs of appends through the worker process: to the long recording and to the reference."""
    pcm = long.audio.pcm(point.chunk_s, 2)
    seqs = {}
    for meeting in (long, ref):
        with locked_recording(meeting.path, meeting.fmt) as rec:
            seqs[meeting.id] = rec.next_seq
    before: Io | None = None
    appended = 0
    while len(point.times["worker"]) < count or len(point.reference["worker"]) < count:
        pair = [(long, point.times["worker"]), (ref, point.reference["worker"])]
        for meeting, samples in pair if len(point.times["worker"]) % 2 == 0 else pair[::-1]:
            seq = seqs[meeting.id]
            cursor = event_cursor(client, keys, meeting)
            meeting.stage_chunk(seq, pcm)
            took = worker_append(client, keys, meeting, seq, cursor)
            seqs[meeting.id] = seq + 1
            if before is not None:
                appended += 1
                if took is not None and len(samples) < count:
                    samples.append(took)
        if before is None:  # the first pair at a length only warms up (and mirrors the grown rows)
            before = Io.of(pid)
    assert before is not None
    point.io["worker"] = (Io.of(pid) - before, appended * len(pcm))
    point.rss, point.peak = memory(pid)


def _naive(meeting: Meeting, point: Point, count: int, scratch: Path) -> None:
    pcm = meeting.audio.pcm(point.chunk_s, 3)
    target = scratch / f"naive-{point.chunk_s:g}s.wav"
    source = meeting.path
    before = Io.of()
    for _ in range(count):
        started = time.perf_counter()
        naive_append(source, target, meeting.fmt, pcm)
        point.times["naive"].append(time.perf_counter() - started)
        source = target
    point.io["naive"] = (Io.of() - before, count * len(pcm))
    target.unlink()


def run(cfg: BenchConfig) -> Section:
    lengths = TINY_LENGTHS_S if cfg.tiny else LENGTHS_S
    count = cfg.repeats * (TINY_APPENDS if cfg.tiny else APPENDS_PER_REPEAT)
    audio = Audio()
    points: list[Point] = []
    with bench_stack(cfg, "concat", **production_env()) as stack:
        free = shutil.disk_usage(stack.workdir).free
        if not cfg.tiny and free < DISK_NEEDED:
            raise Unmeasured(
                f"{stack.workdir} has {free / 2**30:.1f} GiB free; 10 h needs {DISK_NEEDED / 2**30:.1f}"
            )
        engine = make_engine(stack.env["DATABASE_URL"])
        sessions = make_sessionmaker(engine)
        storage = LocalStorage(Path(stack.env["AUDIOFLOW_DATA_DIR"]), fsync=False)  # the bench's staging
        keys = Keys(stack.env["AUDIOFLOW_REDIS_PREFIX"])
        client = redis.Redis.from_url(cfg.redis_url, decode_responses=True)
        try:
            for chunk_s in CHUNKS_S:
                long, ref = (
                    Meeting(f"concat-{chunk_s:g}s-{name}", chunk_s, audio, storage, sessions)
                    for name in ("long", "ref")
                )
                for meeting in (long, ref):
                    meeting.create()
                ref.grow_to(min(REFERENCE_S, lengths[0]))
                worker = stack.start_worker("concat")  # a worker per series: its memory is the series'
                for length in lengths:
                    long.grow_to(length)
                    point = Point(chunk_s, length)
                    _appender(long, ref, point, count)
                    _worker(long, ref, point, count, client, keys, worker.pid)
                    _naive(long, point, cfg.repeats, stack.workdir)
                    points.append(point)
                worker.send_signal(signal.SIGTERM)
                worker.wait(30)
                for meeting in (long, ref):
                    storage.delete_meeting(meeting.id)  # 1.15 GB: freed before the next series
        finally:
            client.close()
            engine.dispose()
    return _report(cfg, points, lengths)


def _ms(values: Sequence[float]) -> Spread:
    return Spread.of([v * 1000 for v in values])


def _ratio(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 else f"{value:.2f}"


NAMES = {
    "appender": "appender (fsync)",
    "appender_nosync": "appender (no fsync)",
    "worker": "concat worker",
    "naive": "naive rewrite",
}


def _report(cfg: BenchConfig, points: list[Point], lengths: Sequence[float]) -> Section:
    ref = _label(min(REFERENCE_S, lengths[0]))
    rows = [
        [f"{p.chunk_s:g} s", _label(p.length_s)]
        + [
            cell
            for m, digits in (("appender", 2), ("appender_nosync", 3), ("worker", 1))
            for cell in (_ms(p.times[m]).fmt(digits), f"{p.vs_reference(m):.2f}")
        ]
        + [_ms(p.times["naive"]).fmt(1), _ratio(p.median("naive") / p.median("appender"))]
        for p in points
    ]
    io_rows = [
        [f"{p.chunk_s:g} s", _label(p.length_s)]
        + [
            f"{p.io[m][0].wchar / p.io[m][1]:.3f} / {p.io[m][0].write_bytes / p.io[m][1]:.3f}"
            for m in ("appender", "worker", "naive")
        ]
        for p in points
    ]
    mem_rows = [
        [f"{p.chunk_s:g} s", _label(p.length_s), f"{p.rss / 2**20:.1f} MiB", f"{p.peak / 2**20:.1f} MiB"]
        for p in points
    ]
    samples = len(points[0].times["appender"])
    markdown = "\n\n".join(
        [
            (__doc__ or "").split("\n\n", 1)[1].strip(),
            f"Recordings of {', '.join(_label(x) for x in lengths)}. At each length: {samples} timed appends "
            f"each by the appender (with and without fsync) and by the worker, every one a sample, each "
            f"paired with the same append to a {ref} reference recording, alternately just before and "
            f"just after it (the "
            f'"÷ {ref}" columns: median at this length / median of the reference, so disk and CPU '
            f"contention from the shared machine cancel out); {cfg.repeats} appends by the naive baseline.",
            "How the long recordings were made: grown by real `RecordingFile.append` calls with fsync off, "
            "one index entry per chunk as a real meeting has, then one `os.sync`; 10 h is a real 1.15 GB "
            "file, and the database holds one `chunks` row per chunk (36,000 at 10 h in 1 s chunks). The "
            "`recordings` row is set to what the file holds, as the worker would have left it; the "
            "worker's first pair of appends at each length is a warm-up, not timed. The page "
            "cache holds the whole recording (the machine has RAM to spare), so the naive baseline reads "
            "from memory: on a cold cache it would be slower still.",
            "### Time per append (ms, median (min-max))",
            md_table(
                [
                    "chunk",
                    "recording",
                    NAMES["appender"],
                    f"÷ {ref}",
                    NAMES["appender_nosync"],
                    f"÷ {ref}",
                    "concat worker, XADD to event",
                    f"÷ {ref}",
                    NAMES["naive"],
                    "naive ÷ appender",
                ],
                rows,
            ),
            _plot(cfg, points),
            "### Bytes written per byte of audio (write syscalls / storage layer)",
            "From `/proc/<pid>/io` over the timed appends (fsync on): `wchar` counts bytes passed to write "
            "calls (the PCM, the 41-byte index record, the 44-byte header patch), `write_bytes` the bytes "
            "the kernel sends to the disk, whole 4 KiB pages, so a page re-dirtied after an fsync counts "
            "again. The worker's figure is its whole process over its appends at that length (both "
            "recordings; recording, index, header, its log lines), not the chunk file the gateway wrote.",
            md_table(["chunk", "recording", "appender", "concat worker", "naive rewrite"], io_rows),
            "### Memory of the concat worker",
            "Resident set (VmRSS) of the real worker process after its appends at each length, and its peak "
            "(VmHWM). One worker process per chunk size, kept through the lengths.",
            md_table(["chunk", "recording", "RSS", "peak RSS"], mem_rows),
            _memory_plot(cfg, points),
        ]
    )
    summary = {}
    for p in (q for q in points if q.length_s == lengths[-1]):
        first = next(q for q in points if q.chunk_s == p.chunk_s and q.length_s == lengths[0])
        at = f"{_label(p.length_s)}, {p.chunk_s:g} s chunks"
        summary[f"appender at {at} ÷ {ref} (fsync / none)"] = (
            f"{p.vs_reference('appender'):.2f} / {p.vs_reference('appender_nosync'):.2f}"
        )
        summary[f"concat worker at {at} ÷ {ref}"] = (
            f"{p.vs_reference('worker'):.2f} ({p.median('worker') * 1000:.0f} ms)"
        )
        summary[f"naive ÷ appender at {at}"] = _ratio(p.median("naive") / p.median("appender"))
        summary[f"worker RSS at {at} ÷ at {_label(first.length_s)}"] = (
            f"{p.rss / first.rss:.2f} ({p.rss / 2**20:.0f} MiB)"
        )
    return Section("Concat cost growth", markdown, summary)


def _plot(cfg: BenchConfig, points: list[Point]) -> str:
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    colors = {
        "appender": "tab:blue",
        "appender_nosync": "tab:green",
        "worker": "tab:purple",
        "naive": "tab:red",
    }
    markers = {"appender": "o", "appender_nosync": "D", "worker": "s", "naive": "^"}
    lengths = sorted({p.length_s for p in points})
    for method, color in colors.items():
        for chunk_s, line in zip(CHUNKS_S, ("-", "--"), strict=True):
            series = [p for p in points if p.chunk_s == chunk_s]
            x = [p.length_s for p in series]
            spreads = [_ms(p.times[method]) for p in series]
            y = [s.median for s in spreads]
            err = [[s.median - s.low for s in spreads], [s.high - s.median for s in spreads]]
            style = {"color": color, "marker": markers[method], "linestyle": line}
            label = f"{NAMES[method]}, {chunk_s:g} s chunks"
            left.errorbar(x, y, yerr=err, capsize=3, label=label, **style)
            if method != "naive":
                right.plot(x, [p.vs_reference(method) for p in series], label=label, **style)
    left.set_yscale("log")
    left.set_ylabel("time per append (ms, log)")
    left.set_title("Append cost vs recording length (median, min-max)")
    reference = _label(min(REFERENCE_S, lengths[0]))
    right.axhline(1.0, color="grey", lw=0.8)
    highest = max(p.vs_reference(m) for p in points for m in METHODS if m != "naive")
    right.set_ylim(0, max(2.0, 1.1 * highest))  # from 0, so that flat looks flat
    right.set_ylabel(f"÷ the same append to a {reference} recording")
    right.set_title("Relative to the reference, appended at the same moments (flat = 1)")
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_xticks(lengths, [_label(x) for x in lengths])
        ax.minorticks_off()
        ax.set_xlabel("recording length (log)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    return save_plot(cfg, figure, "concat_append_time")


def _memory_plot(cfg: BenchConfig, points: list[Point]) -> str:
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(6, 3.5))
    for chunk_s in CHUNKS_S:
        series = [p for p in points if p.chunk_s == chunk_s]
        x = [p.length_s for p in series]
        ax.plot(x, [p.rss / 2**20 for p in series], "o-", label=f"RSS, {chunk_s:g} s chunks")
        ax.plot(x, [p.peak / 2**20 for p in series], "x:", label=f"peak, {chunk_s:g} s chunks")
    lengths = sorted({p.length_s for p in points})
    ax.set_xscale("log")
    ax.set_xticks(lengths, [_label(x) for x in lengths])
    ax.minorticks_off()
    ax.set_ylim(bottom=0)
    ax.set_xlabel("recording length (log)")
    ax.set_ylabel("MiB")
    ax.set_title("Concat worker memory vs recording length")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return save_plot(cfg, figure, "concat_worker_memory")
