"""Section 4, speech-to-text throughput, per engine (Whisper, the default, and pocketsphinx): the
processing worker's real-time factor end to end against the raw engine on the same audio, and how many
real-time meetings the machine sustains.

- **Audio**: 5 s chunks of the real-speech meeting (`tests.speech_corpus.meeting()`) and of the flite
  fixture, side by side.
- **Raw engine**: the engine's ``transcribe`` (``load_engine``, as the worker loads it: Whisper on one
  thread), each 5 s chunk decoded as one utterance in this process, no overlap; RTF = decode time /
  audio time.
- **Processing worker, end to end**: one real ``audioflow worker processing`` process of that engine
  (gateway, PostgreSQL, Redis), the same chunks uploaded at once: RTF = (first upload started -> last
  segment committed) / audio time. Its own decode time (the ``decode_s`` it stores per segment; it
  decodes the engine's default overlap of the previous chunk in front of each) splits that into
  decoding and the rest.
- **Real-time meetings** (real-speech chunks): as many processing workers of the engine as the machine
  has cores, plus the gateway and a concat worker; N meetings each upload one 5 s chunk every 5 s,
  their phases spread evenly. The backlog (``core.streams.queues.backlog``) is sampled every 0.25 s; a window
  "grows" when the least-squares trend of the backlog after its first period adds up to 2 chunks or
  more. N is searched upwards from 85 % of the limit the worker's own end-to-end RTF implies, in steps
  of 15 % of it, then bisected.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

import redis

from audioflow.core.db.engine import make_engine, make_sessionmaker
from audioflow.core.keys import Keys
from audioflow.core.wav import CANONICAL_HEADER_SIZE
from audioflow.workers.simulate import cut_chunks
from audioflow.workers.stt import SttEngine, load_engine
from bench.common import BenchConfig, Section, Spread, Unmeasured, md_table, save_plot
from bench.env import bench_stack
from bench.stt_load import (
    PERIOD_S,
    Burst,
    Window,
    burst,
    drain,
    production_env,
    progress,
    realtime,
    wait_consumers,
)
from bench.wer import AUDIO, ENGINES, load_audio

RTF_CHUNKS = 6  # 30 s of speech per repeat
GROWN = 2.0  # chunks of backlog growth over a window that mean "does not keep up"
WINDOW_S = 20.0
MAX_WINDOWS = 6
TINY_WINDOW_S = 5.0


def _raw_rtf(engine: SttEngine, pcms: list[bytes], audio_s: float) -> float:
    started = time.perf_counter()
    for pcm in pcms:
        engine.transcribe(pcm)
    return (time.perf_counter() - started) / audio_s


def _search(start: int, step: int, measure: Any, max_windows: int) -> tuple[int | None, int | None]:
    """Windows at rising N until one grows, then bisect: ``(largest sustained, smallest grown)``."""
    sustained: int | None = None
    grown: int | None = None
    n = start
    for _ in range(max_windows):
        if measure(n).growth() < GROWN:
            sustained = n if sustained is None else max(sustained, n)
        else:
            grown = n if grown is None else min(grown, n)
        if grown is not None and (grown == 1 or (sustained is not None and grown - sustained <= 1)):
            break
        if grown is None:
            n += step
        elif sustained is None:
            n = max(1, n - step)
        else:
            n = (sustained + grown) // 2
    return sustained, grown


@dataclass
class Measured:
    """One engine's figures: per audio the raw RTF and the worker's bursts (one per repeat, run back to
    back), and the real-time meeting search on the real-speech chunks."""

    engine: str
    raw: dict[str, list[float]] = field(default_factory=dict)
    bursts: dict[str, list[Burst]] = field(default_factory=dict)
    windows: dict[int, Window] = field(default_factory=dict)
    sustained: int | None = None
    grown: int | None = None


def _chunks(audio: str) -> list[bytes]:
    """The audio's whole 5 s chunks as WAV files (all of it, for the meetings' variety, tiny run or not)."""
    a = load_audio(audio, tiny=False)
    whole = round(PERIOD_S * a.fmt.sample_rate) * a.fmt.block_align
    return [b for b in cut_chunks(a.fmt, a.pcm, PERIOD_S) if len(b) - CANONICAL_HEADER_SIZE == whole]


def run(cfg: BenchConfig) -> Section:
    cores = len(os.sched_getaffinity(0))
    bodies = {a: _chunks(a) for a in AUDIO}
    measured = [_measure(cfg, engine, bodies, cores) for engine in ENGINES]
    return _report(cfg, measured, cores)


def _measure(cfg: BenchConfig, engine: str, bodies: dict[str, list[bytes]], cores: int) -> Measured:
    m = Measured(engine)
    stt = load_engine(engine)
    worker_env = {"AUDIOFLOW_STT_ENGINE": engine}
    with bench_stack(cfg, f"stt-{engine}", **production_env()) as stack:
        db = make_engine(stack.env["DATABASE_URL"])
        sessions = make_sessionmaker(db)
        keys = Keys(stack.env["AUDIOFLOW_REDIS_PREFIX"])
        client = redis.Redis.from_url(cfg.redis_url, decode_responses=True)
        try:
            stack.start_api()
            stack.start_worker("processing", worker_env)
            wait_consumers(client, keys, 1)
            for audio, chunks in bodies.items():
                rtf_bodies = chunks[: 1 if cfg.tiny else RTF_CHUNKS]
                audio_s = len(rtf_bodies) * PERIOD_S
                pcms = [b[CANONICAL_HEADER_SIZE:] for b in rtf_bodies]
                _raw_rtf(stt, [chunks[-1][CANONICAL_HEADER_SIZE:]], PERIOD_S)  # warm-up
                burst(stack, sessions, f"rtf-{audio}-warmup", chunks[-1:], PERIOD_S)
                for i in range(cfg.repeats):  # interleaved, so that both see the same machine load
                    m.raw.setdefault(audio, []).append(_raw_rtf(stt, pcms, audio_s))
                    m.bursts.setdefault(audio, []).append(
                        burst(stack, sessions, f"rtf-{audio}-{i}", rtf_bodies, audio_s)
                    )
                progress(
                    f"stt: {engine} on the {audio}: RTF raw {m.raw[audio]}, "
                    f"end to end {[b.wall_s / b.audio_s for b in m.bursts[audio]]}"
                )
            del stt  # its memory is not the workers'

            for _ in range(cores - 1):
                stack.start_worker("processing", worker_env)
            stack.start_worker("concat")
            wait_consumers(client, keys, cores)
            drain(client, keys, 60)

            def measure(n: int) -> Window:
                window = realtime(
                    stack,
                    client,
                    keys,
                    f"rt{n}",
                    n,
                    TINY_WINDOW_S if cfg.tiny else WINDOW_S,
                    bodies["meeting"],
                )
                m.windows[n] = window
                progress(f"stt: {engine}, {n} meetings: backlog growth {window.growth():+.1f}")
                drain(client, keys, 180)
                return window

            e2e_limit = cores / Spread.of([b.wall_s / b.audio_s for b in m.bursts["meeting"]]).median
            start = 1 if cfg.tiny else max(1, math.floor(0.85 * e2e_limit))
            step = max(1, round(0.15 * e2e_limit))
            m.sustained, m.grown = _search(start, step, measure, 1 if cfg.tiny else MAX_WINDOWS)
        finally:
            client.close()
            db.dispose()
    if not cfg.tiny and (m.sustained is None or m.grown is None):
        raise Unmeasured(
            f"{engine}: the real-time meeting search did not bracket the limit in {MAX_WINDOWS} windows "
            f"(largest sustained {m.sustained}, smallest grown {m.grown})"
        )
    return m


def _rtf_rows(m: Measured, audio: str, cores: int) -> tuple[list[list[str]], Spread, Spread]:
    """The RTF table's rows for one engine and audio, and the raw and end-to-end spreads."""
    raw, bursts = m.raw[audio], m.bursts[audio]
    raw_rtf = Spread.of(raw)
    decode = Spread.of([b.decode_s / b.audio_s for b in bursts])
    e2e = Spread.of([b.wall_s / b.audio_s for b in bursts])
    # per repeat, raw and end to end ran back to back: their ratio cancels the machine's load of the moment
    per_decode = Spread.of([b.decode_s / b.audio_s / r for b, r in zip(bursts, raw, strict=True)])
    per_e2e = Spread.of([b.wall_s / b.audio_s / r for b, r in zip(bursts, raw, strict=True)])
    label = f"{m.engine}, {AUDIO[audio]}"
    rows = [
        [label, "raw engine, in process", raw_rtf.fmt(3), "1.00", f"{cores / raw_rtf.median:.1f}"],
        [label, "processing worker: its decode (overlap included)", decode.fmt(3), per_decode.fmt(2), ""],
        [label, "processing worker, end to end", e2e.fmt(3), per_e2e.fmt(2), f"{cores / e2e.median:.1f}"],
    ]
    return rows, raw_rtf, e2e


def _report(cfg: BenchConfig, measured: list[Measured], cores: int) -> Section:
    rtf_rows: list[list[str]] = []
    window_rows: list[list[object]] = []
    limit_rows: list[list[str]] = []
    summary: dict[str, object] = {}
    for m in measured:
        for audio in AUDIO:
            rows, raw_rtf, e2e = _rtf_rows(m, audio, cores)
            rtf_rows += rows
            summary[f"{m.engine} on the {audio}: raw RTF / end-to-end RTF"] = (
                f"{raw_rtf.fmt(3)} / {e2e.fmt(3)}"
            )
        window_rows += [
            [
                m.engine,
                n,
                f"{n / PERIOD_S:.1f}",
                f"{w.growth():+.1f}",
                f"{w.late_s:.2f} s",
                f"{w.stack_cores:.2f}",
                f"{w.own_cores:.2f}",
                f"{w.machine_cores:.2f}",
                "grows" if w.growth() >= GROWN else "keeps up",
            ]
            for n, w in sorted(m.windows.items())
        ]
        raw_rtf = Spread.of(m.raw["meeting"])
        raw_limit = Spread(cores / raw_rtf.high, cores / raw_rtf.median, cores / raw_rtf.low)
        e2e = Spread.of([b.wall_s / b.audio_s for b in m.bursts["meeting"]])
        found = "not bracketed (tiny run)" if m.sustained is None or m.grown is None else str(m.sustained)
        limit_rows.append(
            [
                m.engine,
                found,
                "-" if m.grown is None else str(m.grown),
                raw_limit.fmt(1),
                Spread(cores / e2e.high, cores / e2e.median, cores / e2e.low).fmt(1),
                "-" if m.sustained is None else f"{m.sustained / raw_limit.median:.2f}",
            ]
        )
        summary[f"{m.engine}: real-time meetings sustained on {cores} cores (real speech)"] = found
        summary[f"{m.engine}: limit implied by raw RTF"] = raw_limit.fmt(1)
    default = measured[0]
    if default.sustained is not None and default.grown is not None:
        summary[f"goal: ≥ 25 real-time meetings with {default.engine}"] = (
            "met" if default.sustained >= 25 else f"NOT met ({default.sustained})"
        )
    markdown = "\n\n".join(
        [
            (__doc__ or "").split("\n\n", 1)[1].strip(),
            f"### Real-time factor ({(1 if cfg.tiny else RTF_CHUNKS) * PERIOD_S:g} s of each audio in 5 s "
            f"chunks, {cfg.repeats} repeats, raw and end to end back to back in each)",
            md_table(
                [
                    "engine, audio",
                    "",
                    "RTF, median (min-max)",
                    "÷ raw engine, same repeat",
                    f"{cores} cores ÷ RTF",
                ],
                rtf_rows,
            ),
            f"### Concurrent real-time meetings ({cores} processing workers on {cores} cores, "
            "real-speech chunks)",
            md_table(
                [
                    "engine",
                    "meetings",
                    "chunks/s offered",
                    "backlog growth (chunks)",
                    "sender late by",
                    "CPU: audioflow (cores)",
                    "CPU: load generator",
                    "CPU: whole machine",
                    "",
                ],
                window_rows,
            ),
            "CPU columns: cores' worth of CPU time over the window, from /proc, for the stack's processes "
            "(gateway, workers), for this process (the uploads and the backlog sampling), and for the whole "
            f"machine ({os.cpu_count()} cores): when the machine is busier than audioflow and the load "
            "generator account for, something else was sharing the cores.",
            md_table(
                [
                    "engine",
                    "sustained (largest N that keeps up)",
                    "smallest N whose backlog grew",
                    f"limit implied by the raw RTF ({cores} ÷ RTF)",
                    f"limit implied by the worker's end-to-end RTF ({cores} ÷ RTF)",
                    "sustained ÷ raw-RTF limit",
                ],
                limit_rows,
            ),
            "The meeting figure comes from one search per engine (one window per N, "
            f"{TINY_WINDOW_S if cfg.tiny else WINDOW_S:g} s each): repeating it would cost minutes per "
            "repeat, so it has the resolution of the search (one meeting) rather than a min/max. The RTF "
            "figures are min/median/max over the repeats; the limits' ranges follow from theirs. "
            "The gateway, the concat worker, PostgreSQL, Redis and this load generator share the same "
            "cores, as they would on a 2-core box.",
            _plot(cfg, measured),
        ]
    )
    return Section("Speech-to-text throughput", markdown, summary)


def _plot(cfg: BenchConfig, measured: list[Measured]) -> str:
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(measured), figsize=(12, 4), squeeze=False)
    for ax, m in zip(axes[0], measured, strict=True):
        for n, w in sorted(m.windows.items()):
            ax.plot(
                [s[0] for s in w.samples],
                [s[1] for s in w.samples],
                label=f"{n} meetings ({'grows' if w.growth() >= GROWN else 'keeps up'})",
            )
        ax.set_xlabel("seconds into the window")
        ax.set_ylabel("processing backlog (chunks)")
        ax.set_title(f"{m.engine}: backlog under N real-time meetings")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    return save_plot(cfg, figure, "stt_realtime_backlog")
