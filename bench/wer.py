"""Section 6, transcript quality: word error rate of the speech fixture decoded in one piece, and cut
into 10, 5, 2 and 1 s chunks with and without the overlap stitching.

- **Whole file**: the engine (``PocketsphinxEngine.transcribe``) on the whole fixture, one utterance.
- **Chunks, in process**: the unit tests' `_stitch_all` (`tests/unit/workers/test_stt.py`): every
  chunk through `transcribe_chunk` in order, with the previous chunk's PCM, exactly as the processing
  worker calls it; overlap 1 s (`AUDIOFLOW_STT_OVERLAP_S`'s default) = stitched, 0 = plain. Each pass
  (and the whole file) runs in a process of its own on a freshly loaded engine.
- **Chunks, through the pipeline** (5 s): the chunks uploaded to a real gateway, then real processing
  workers started with that overlap: one worker (stitched and plain), then as many as cores (stitched,
  the default configuration on this box); the transcript read back from the API.

Scored with `audioflow.workers.stt.wer.word_error_rate` (jiwer, lowercased, punctuation removed)
against `speech.txt`. Decoding is deterministic for a given decoder history (the engine's dither is
seeded, and every pass starts from a fresh engine), so each figure is measured once: a repeat gives
the same number.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor

from audioflow.core.wav import AudioFormat
from audioflow.workers.simulate import cut_chunks, load_speech, reference_text
from audioflow.workers.stt import DEFAULT_EDGE_S, load_engine, to_engine_pcm
from audioflow.workers.stt.pocketsphinx import PocketsphinxEngine
from audioflow.workers.stt.wer import word_error_rate
from bench.common import BenchConfig, Section, Unmeasured, md_table, save_plot
from bench.env import bench_stack
from bench.stt_load import production_env
from tests.integration.stack import Stack

CHUNKS_S = (10.0, 5.0, 2.0, 1.0)
TINY_CHUNKS_S = (5.0, 2.0)
PIPELINE_CHUNK_S = 5.0
TINY_AUDIO_S = 10.0
OVERLAP_S = PocketsphinxEngine.default_overlap_s  # the flite figures are pocketsphinx's


def _decode(fmt: AudioFormat, pcm: bytes, chunk_s: float | None, overlap_s: float) -> str:
    """One decoding pass in a process of its own: the whole file (``chunk_s`` None) or chunked."""
    from tests.unit.workers.test_stt import _stitch_all

    engine = load_engine("pocketsphinx")
    if chunk_s is None:
        words = engine.transcribe(to_engine_pcm(pcm, fmt, engine.sample_rate))
    else:
        words = _stitch_all(engine, pcm, fmt, chunk_s, overlap_s=overlap_s, edge_s=DEFAULT_EDGE_S)
    return " ".join(w.text for w in words)


def _pipeline(stack: Stack, meeting: str, bodies: list[bytes], overlap_s: float, workers: int) -> str:
    """Upload every chunk first (so each finds its predecessor, as in process), then let workers run."""
    for seq, body in enumerate(bodies):
        if stack.send(meeting, seq, body) != 201:
            raise Unmeasured(f"the gateway refused {meeting}/{seq}")
    procs = [
        stack.start_worker("processing", {"AUDIOFLOW_STT_OVERLAP_S": f"{overlap_s:g}"})
        for _ in range(workers)
    ]
    deadline = time.monotonic() + 120 + 2 * len(bodies) * PIPELINE_CHUNK_S
    try:
        while time.monotonic() < deadline:
            response = stack.get(f"/v1/meetings/{meeting}/transcript")
            segments = response.json()["segments"] if response.status_code == 200 else []
            if len(segments) == len(bodies):
                return " ".join(s["text"] for s in sorted(segments, key=lambda s: s["seq"]))
            time.sleep(0.2)
        raise Unmeasured(f"{meeting}: the pipeline did not transcribe {len(bodies)} chunks in time")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)


def run(cfg: BenchConfig) -> Section:
    fmt, pcm = load_speech()
    chunk_sizes = TINY_CHUNKS_S if cfg.tiny else CHUNKS_S
    if cfg.tiny:
        pcm = pcm[: round(TINY_AUDIO_S * fmt.sample_rate) * fmt.block_align]
    cores = len(os.sched_getaffinity(0))
    passes: list[tuple[float | None, float]] = [(None, 0.0)] + [
        (c, o) for c in chunk_sizes for o in (OVERLAP_S, 0.0)
    ]
    # biggest first, so that the pool's processes finish together
    order = sorted(passes, key=lambda p: -(2.0 if p[0] is None else 1.0 + p[1] / p[0]))
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=cores, mp_context=spawn) as pool:
        futures = {p: pool.submit(_decode, fmt, pcm, *p) for p in order}
        texts = {p: f.result() for p, f in futures.items()}
    # tiny: an excerpt has no reference text of its own; its one-piece decode stands in (not a result)
    reference = texts[(None, 0.0)] if cfg.tiny else reference_text()

    bodies = cut_chunks(fmt, pcm, PIPELINE_CHUNK_S)
    # One worker decodes the chunks in order from a fresh start, as a pass in process does; as many
    # workers as cores is how this box runs, each decoder then hearing a different part of the meeting.
    runs = [(OVERLAP_S, 1), (0.0, 1)] + ([] if cfg.tiny or cores == 1 else [(OVERLAP_S, cores)])
    with bench_stack(cfg, "wer", **production_env()) as stack:
        stack.start_api()
        piped = {
            (overlap, n): word_error_rate(
                reference,
                _pipeline(stack, f"wer-{'stitched' if overlap else 'plain'}-{n}", bodies, overlap, n),
            )
            for overlap, n in runs
        }
    chunked = {p: word_error_rate(reference, t) for p, t in texts.items()}
    return _report(cfg, chunk_sizes, chunked, piped)


def _ratio(value: float, whole: float) -> str:
    return f"{value / whole:.2f}" if whole > 0 else "-"


def _report(
    cfg: BenchConfig,
    chunk_sizes: tuple[float, ...],
    chunked: dict[tuple[float | None, float], float],
    piped: dict[tuple[float, int], float],
) -> Section:
    whole = chunked[(None, 0.0)]

    def row(label: str, stitched: float | None, plain: float | None) -> list[str]:
        cells = [label]
        for value in (stitched, plain):
            cells += ["not run", ""] if value is None else [f"{value:.3f}", _ratio(value, whole)]
        ratio = f"{stitched / plain:.2f}" if stitched is not None and plain is not None and plain > 0 else ""
        return [*cells, ratio]

    rows = [["whole file, one piece", f"{whole:.3f}", "1.00", "", "", ""]]
    for c in chunk_sizes:
        rows.append(row(f"{c:g} s chunks, in process", chunked[(c, OVERLAP_S)], chunked[(c, 0.0)]))
        if c == PIPELINE_CHUNK_S:
            for n in sorted({n for _, n in piped}):
                label = f"{c:g} s chunks, through the pipeline, {n} worker{'s' if n > 1 else ''}"
                rows.append(row(label, piped.get((OVERLAP_S, n)), piped.get((0.0, n))))
    single = all(abs(piped[(o, 1)] - chunked[(PIPELINE_CHUNK_S, o)]) < 1e-9 for o in (OVERLAP_S, 0.0))
    check = (
        "With one worker the pipeline's figures equal the in-process ones, as they should: the same "
        "chunks in the same order, each with its predecessor present, on a decoder that starts fresh."
        if single
        else "**With one worker the pipeline's figures differ from the in-process ones**, though the same "
        "chunks were decoded in order with their predecessors present: the worker does not do what the "
        "in-process path does."
    )
    many = [(o, n) for o, n in piped if n > 1]
    if many:
        differs = any(abs(piped[k] - chunked[(PIPELINE_CHUNK_S, k[0])]) > 1e-9 for k in many)
        check += (
            " With several workers the figure differs a little: pocketsphinx's decoder keeps state "
            "from one utterance to the next (the same chunk decodes differently after other audio), "
            "and each worker's decoder has heard a different subset of the chunks."
            if differs
            else " With several workers the figure is the same here too."
        )
    tiny = (
        f"**Tiny run**: the first {TINY_AUDIO_S:g} s of the fixture, scored against its own one-piece "
        "decode (so the whole-file WER is 0 by construction): not a quality figure.\n\n"
        if cfg.tiny
        else ""
    )
    markdown = "\n\n".join(
        [
            tiny + (__doc__ or "").split("\n\n", 1)[1].strip(),
            md_table(
                [
                    "decoded as",
                    f"WER stitched ({OVERLAP_S:g} s overlap)",
                    "÷ whole",
                    "WER plain (no overlap)",
                    "÷ whole",
                    "stitched ÷ plain",
                ],
                rows,
            ),
            check,
            _plot(cfg, chunk_sizes, whole, chunked),
        ]
    )
    summary = {"WER, whole file": f"{whole:.3f}"}
    for c in chunk_sizes:
        summary[f"WER {c:g} s chunks, stitched / plain"] = (
            f"{chunked[(c, OVERLAP_S)]:.3f} / {chunked[(c, 0.0)]:.3f}"
        )
    summary[f"WER {PIPELINE_CHUNK_S:g} s through the pipeline (1 worker), stitched / plain"] = (
        f"{piped[(OVERLAP_S, 1)]:.3f} / {piped[(0.0, 1)]:.3f}"
    )
    return Section("Transcript quality", markdown, summary)


def _plot(
    cfg: BenchConfig,
    chunk_sizes: tuple[float, ...],
    whole: float,
    chunked: dict[tuple[float | None, float], float],
) -> str:
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(6, 3.8))
    x = list(chunk_sizes)
    ax.plot(x, [chunked[(c, OVERLAP_S)] for c in x], "o-", label=f"stitched ({OVERLAP_S:g} s overlap)")
    ax.plot(x, [chunked[(c, 0.0)] for c in x], "s--", label="plain (no overlap)")
    ax.axhline(whole, color="grey", ls=":", label="whole file, one piece")
    ax.set_xscale("log")
    ax.set_xticks(x, [f"{c:g} s" for c in x])
    ax.minorticks_off()
    ax.set_ylim(bottom=0)
    ax.set_xlabel("chunk length")
    ax.set_ylabel("word error rate")
    ax.set_title("WER of the speech fixture vs chunk length")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return save_plot(cfg, figure, "wer_vs_chunk")
