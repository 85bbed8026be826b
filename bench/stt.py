"""Section 4, speech-to-text throughput: the processing worker's real-time factor end to end against
the raw pocketsphinx decoder on the same audio, and how many real-time meetings the machine sustains.

- **Raw decoder**: pocketsphinx's ``Decoder`` with the bundled en-us model, as the engine configures it,
  each 5 s chunk decoded as one utterance in this process; RTF = decode time / audio time.
- **Processing worker, end to end**: one real ``audioflow worker processing`` process (gateway,
  PostgreSQL, Redis), the same chunks uploaded at once: RTF = (first upload started -> last segment
  committed) / audio time. Its own decode time (the ``decode_s`` it stores per segment; it decodes a
  1 s overlap of the previous chunk in front of each) splits that into decoding and the rest.
- **Real-time meetings**: as many processing workers as the machine has cores, plus the gateway and
  a concat worker; N meetings each upload one 5 s chunk every 5 s, their phases spread evenly. The
  backlog (``core.streams.backlog``) is sampled every 0.25 s; a window "grows" when the least-squares
  trend of the backlog after its first period adds up to 2 chunks or more. N is searched upwards from
  85 % of the limit the worker's own end-to-end RTF implies, in steps of 15 % of it, then bisected.
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import redis

from audioflow.core.db.engine import make_engine, make_sessionmaker
from audioflow.core.keys import Keys
from audioflow.core.wav import CANONICAL_HEADER_SIZE
from audioflow.workers.simulate import cut_chunks, load_speech
from bench.common import BenchConfig, Section, Spread, Unmeasured, md_table, save_plot
from bench.env import bench_stack
from bench.stt_load import PERIOD_S, Burst, Window, burst, drain, production_env, realtime, wait_consumers

RTF_CHUNKS = 6  # 30 s of speech per repeat
GROWN = 2.0  # chunks of backlog growth over a window that mean "does not keep up"
WINDOW_S = 20.0
MAX_WINDOWS = 6
TINY_WINDOW_S = 5.0


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _raw_decoder() -> Any:
    """pocketsphinx's own Decoder, configured as ``PocketsphinxEngine`` does (no dither, no stitching)."""
    from pocketsphinx import Decoder, get_model_path

    root = Path(get_model_path()) / "en-us"
    return Decoder(
        hmm=str(root / "en-us"),
        lm=str(root / "en-us.lm.bin"),
        dict=str(root / "cmudict-en-us.dict"),
        samprate=16000,
        logfn=os.devnull,
    )


def _raw_rtf(decoder: Any, pcms: list[bytes], audio_s: float) -> float:
    started = time.perf_counter()
    for pcm in pcms:
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        decoder.hyp()
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


def run(cfg: BenchConfig) -> Section:
    fmt, pcm = load_speech()
    whole = round(PERIOD_S * fmt.sample_rate) * fmt.block_align
    bodies = [b for b in cut_chunks(fmt, pcm, PERIOD_S) if len(b) - CANONICAL_HEADER_SIZE == whole]
    rtf_bodies = bodies[: 1 if cfg.tiny else RTF_CHUNKS]
    audio_s = len(rtf_bodies) * PERIOD_S
    decoder = _raw_decoder()
    pcms = [b[CANONICAL_HEADER_SIZE:] for b in rtf_bodies]
    _raw_rtf(decoder, [bodies[-1][CANONICAL_HEADER_SIZE:]], PERIOD_S)  # warm-up
    cores = len(os.sched_getaffinity(0))
    windows: dict[int, Window] = {}
    raw: list[float] = []
    bursts: list[Burst] = []
    with bench_stack(cfg, "stt", **production_env()) as stack:
        engine = make_engine(stack.env["DATABASE_URL"])
        sessions = make_sessionmaker(engine)
        keys = Keys(stack.env["AUDIOFLOW_REDIS_PREFIX"])
        client = redis.Redis.from_url(cfg.redis_url, decode_responses=True)
        try:
            stack.start_api()
            stack.start_worker("processing")
            wait_consumers(client, keys, 1)
            burst(stack, sessions, "rtf-warmup", bodies[-1:], PERIOD_S)
            for i in range(cfg.repeats):  # interleaved, so that both see the same machine load
                raw.append(_raw_rtf(decoder, pcms, audio_s))
                bursts.append(burst(stack, sessions, f"rtf-{i}", rtf_bodies, audio_s))
            progress(f"stt: RTF raw {raw}, end to end {[b.wall_s / b.audio_s for b in bursts]}")

            for _ in range(cores - 1):
                stack.start_worker("processing")
            stack.start_worker("concat")
            wait_consumers(client, keys, cores)
            drain(client, keys, 60)

            def measure(n: int) -> Window:
                window = realtime(
                    stack, client, keys, f"rt{n}", n, TINY_WINDOW_S if cfg.tiny else WINDOW_S, bodies
                )
                windows[n] = window
                progress(f"stt: {n} meetings: backlog growth {window.growth():+.1f}")
                drain(client, keys, 180)
                return window

            e2e_limit = cores / Spread.of([b.wall_s / b.audio_s for b in bursts]).median
            start = 1 if cfg.tiny else max(1, math.floor(0.85 * e2e_limit))
            step = max(1, round(0.15 * e2e_limit))
            sustained, grown = _search(start, step, measure, 1 if cfg.tiny else MAX_WINDOWS)
        finally:
            client.close()
            engine.dispose()
    if not cfg.tiny and (sustained is None or grown is None):
        raise Unmeasured(
            f"the real-time meeting search did not bracket the limit in {MAX_WINDOWS} windows "
            f"(largest sustained {sustained}, smallest grown {grown})"
        )
    return _report(cfg, raw, bursts, windows, cores, sustained, grown)


def _report(
    cfg: BenchConfig,
    raw: list[float],
    bursts: list[Burst],
    windows: dict[int, Window],
    cores: int,
    sustained: int | None,
    grown: int | None,
) -> Section:
    raw_rtf = Spread.of(raw)
    decode = Spread.of([b.decode_s / b.audio_s for b in bursts])
    e2e = Spread.of([b.wall_s / b.audio_s for b in bursts])
    # per repeat, raw and end to end ran back to back: their ratio cancels the machine's load of the moment
    per_decode = Spread.of([b.decode_s / b.audio_s / r for b, r in zip(bursts, raw, strict=True)])
    per_e2e = Spread.of([b.wall_s / b.audio_s / r for b, r in zip(bursts, raw, strict=True)])
    # cores / RTF: the most meetings whose audio the decoder alone could keep up with
    raw_limit = Spread(cores / raw_rtf.high, cores / raw_rtf.median, cores / raw_rtf.low)
    e2e_limit = Spread(cores / e2e.high, cores / e2e.median, cores / e2e.low)
    rtf_rows = [
        ["raw pocketsphinx decoder, in process", raw_rtf.fmt(3), "1.00"],
        [
            "processing worker: its decode (1 s overlap included)",
            decode.fmt(3),
            per_decode.fmt(2),
        ],
        ["processing worker, end to end", e2e.fmt(3), per_e2e.fmt(2)],
    ]
    window_rows = [
        [
            n,
            f"{n / PERIOD_S:.1f}",
            f"{w.growth():+.1f}",
            f"{w.late_s:.2f} s",
            f"{w.stack_cores:.2f}",
            f"{w.own_cores:.2f}",
            f"{w.machine_cores:.2f}",
            "grows" if w.growth() >= GROWN else "keeps up",
        ]
        for n, w in sorted(windows.items())
    ]
    found = "not bracketed (tiny run)" if sustained is None or grown is None else str(sustained)
    rtf_audio = bursts[0].audio_s
    markdown = "\n\n".join(
        [
            (__doc__ or "").split("\n\n", 1)[1].strip(),
            f"### Real-time factor ({rtf_audio:g} s of the speech fixture in 5 s chunks, "
            f"{cfg.repeats} repeats, raw and end to end back to back in each)",
            md_table(["", "RTF, median (min-max)", "÷ raw decoder, same repeat"], rtf_rows),
            f"### Concurrent real-time meetings ({cores} processing workers on {cores} cores)",
            md_table(
                [
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
                ["", "meetings"],
                [
                    ["sustained (largest N that keeps up)", found],
                    ["smallest N whose backlog grew", "-" if grown is None else str(grown)],
                    [f"limit implied by the raw RTF ({cores} cores ÷ raw RTF)", raw_limit.fmt(1)],
                    [f"limit implied by the worker's end-to-end RTF ({cores} ÷ RTF)", e2e_limit.fmt(1)],
                    [
                        "sustained ÷ raw-RTF limit",
                        "-" if sustained is None else f"{sustained / raw_limit.median:.2f}",
                    ],
                ],
            ),
            "The meeting figure comes from one search (one window per N, "
            f"{TINY_WINDOW_S if cfg.tiny else WINDOW_S:g} s each): repeating it would cost minutes per "
            "repeat, so it has the resolution of the search (one meeting) rather than a min/max. The RTF "
            "figures are min/median/max over the repeats; the raw-RTF limit's range follows from theirs. "
            "The gateway, the concat worker, PostgreSQL, Redis and this load generator share the same "
            "cores, as they would on a 2-core box.",
            _plot(cfg, windows),
        ]
    )
    summary = {
        "raw decoder RTF": raw_rtf.fmt(3),
        "processing worker end-to-end RTF": e2e.fmt(3),
        "end-to-end RTF ÷ raw RTF (same repeat)": per_e2e.fmt(2),
        f"real-time meetings sustained on {cores} cores": found,
        "limit implied by raw RTF": raw_limit.fmt(1),
    }
    if sustained is not None:
        summary["sustained ÷ raw-RTF limit"] = f"{sustained / raw_limit.median:.2f}"
    return Section("Speech-to-text throughput", markdown, summary)


def _plot(cfg: BenchConfig, windows: dict[int, Window]) -> str:
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(7, 4))
    for n, w in sorted(windows.items()):
        t = [s[0] for s in w.samples]
        ax.plot(
            t,
            [s[1] for s in w.samples],
            label=f"{n} meetings ({'grows' if w.growth() >= GROWN else 'keeps up'})",
        )
    ax.set_xlabel("seconds into the window")
    ax.set_ylabel("processing backlog (chunks)")
    ax.set_title("Backlog under N real-time meetings (one 5 s chunk every 5 s each)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return save_plot(cfg, figure, "stt_realtime_backlog")
