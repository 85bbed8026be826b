"""Section 6, transcript quality: word error rate of each engine (Whisper, the default, and
pocketsphinx) on real human speech and on the synthetic speech fixture, decoded whole and cut into 10,
5, 2 and 1 s chunks with and without the overlap stitching.

- **Audio**: the *real-speech meeting* (`tests.speech_corpus.meeting()`: LibriVox reading and Asterisk
  telephone prompts from Debian packages, 0.3-0.8 s pauses between utterances), scored with
  `real_speech_wer` (both sides lowercased, numbers spelled out, punctuation and fillers out); and
  the *flite fixture* (`speech.wav`, synthetic), scored with `word_error_rate` as before.
- **Whole**: the engine's `transcribe` on each utterance of the meeting alone (the errors of all of
  them over all their words), on the fixture in one piece.
- **Chunks, in process**: the unit tests' `_stitch_all` (`tests/unit/workers/test_stt.py`): every
  chunk through `transcribe_chunk` in order, with the previous chunk's PCM and kept words, as the
  processing worker calls it; stitched = the engine's default overlap (`default_overlap_s`), plain =
  overlap 0. Each pass runs in a process of its own on a freshly loaded engine.
- **Chunks, through the pipeline** (5 s, the meeting): the chunks uploaded to a real gateway, then
  real processing workers of that engine started with that overlap: one worker (stitched and plain),
  then as many as cores (stitched, the default configuration on this box); the transcript read back
  from the API.

Decoding is deterministic for a given decoder history (pocketsphinx's dither is seeded, Whisper decodes
each chunk greedily from a fresh state, and every pass starts from a fresh engine), so each figure is
measured once: a repeat gives the same number.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from audioflow.core.wav import AudioFormat
from audioflow.workers.simulate import cut_chunks, load_speech, reference_text
from audioflow.workers.stt import DEFAULT_EDGE_S, load_engine, to_engine_pcm
from audioflow.workers.stt.pocketsphinx import PocketsphinxEngine
from audioflow.workers.stt.wer import real_speech_wer, word_error_rate
from audioflow.workers.stt.whisper import WhisperEngine
from bench.common import BenchConfig, Section, Unmeasured, md_table, save_plot
from bench.env import bench_stack
from bench.stt_load import production_env, progress
from tests import speech_corpus
from tests.integration.stack import Stack

ENGINES = ("whisper", "pocketsphinx")  # the default first
OVERLAP_S = {"whisper": WhisperEngine.default_overlap_s, "pocketsphinx": PocketsphinxEngine.default_overlap_s}
AUDIO = {"meeting": "real-speech meeting", "flite": "flite fixture (synthetic)"}
CHUNKS_S = (10.0, 5.0, 2.0, 1.0)
TINY_CHUNKS_S = (5.0, 2.0)
PIPELINE_CHUNK_S = 5.0
TINY_AUDIO_S = 10.0  # of the fixture
TINY_UTTERANCES = 2  # of the meeting
#: The issue's goals: the default engine's WER on the real-speech meeting at this chunk length at most
#: this far above its whole-utterance WER (5 s through the pipeline, 2 s in process).
GOALS = {5.0: 0.01, 2.0: 0.03}

Key = tuple[str, str, float | None, float]  # engine, audio, chunk length (None: whole), overlap


@dataclass(frozen=True)
class Audio:
    fmt: AudioFormat
    pcm: bytes
    pieces: tuple[bytes, ...]  # what "whole" decodes, one by one
    references: tuple[str, ...]  # one per piece

    @property
    def seconds(self) -> float:
        return len(self.pcm) / self.fmt.block_align / self.fmt.sample_rate


def load_audio(name: str, tiny: bool) -> Audio:
    """The real-speech meeting (``"meeting"``) or the flite fixture; a smoke test's head of either."""
    if name == "flite":
        fmt, pcm = load_speech()
        if tiny:
            pcm = pcm[: round(TINY_AUDIO_S * fmt.sample_rate) * fmt.block_align]
        return Audio(fmt, pcm, (pcm,), (reference_text(),))
    meeting = speech_corpus.meeting()
    if tiny:
        meeting = meeting.head(TINY_UTTERANCES)
    parts = meeting.parts
    return Audio(
        meeting.fmt,
        meeting.pcm,
        tuple(p.utterance.pcm() for p in parts),
        tuple(p.utterance.text for p in parts),
    )


def score(audio: str, references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Hypotheses one per piece (errors over all pieces' words), or one for the whole audio."""
    if len(hypotheses) != len(references):
        references = [" ".join(references)]
    if audio == "meeting":
        return real_speech_wer(references, hypotheses)
    return word_error_rate(" ".join(references), " ".join(hypotheses))


def _decode(key: Key, tiny: bool) -> list[str]:
    """One decoding pass in a process of its own: the text of each piece (whole) or of the chunks."""
    from tests.unit.workers.test_stt import _stitch_all

    engine_name, audio_name, chunk_s, overlap_s = key
    audio = load_audio(audio_name, tiny)
    engine = load_engine(engine_name)
    started = time.perf_counter()
    if chunk_s is None:
        pieces = [engine.transcribe(to_engine_pcm(p, audio.fmt, engine.sample_rate)) for p in audio.pieces]
    else:
        pieces = [
            _stitch_all(engine, audio.pcm, audio.fmt, chunk_s, overlap_s=overlap_s, edge_s=DEFAULT_EDGE_S)
        ]
    how = "whole" if chunk_s is None else f"{chunk_s:g} s chunks, {overlap_s:g} s overlap"
    progress(f"wer: {engine_name} on the {audio_name}, {how}: {time.perf_counter() - started:.0f} s")
    return [" ".join(w.text for w in words) for words in pieces]


def _pipeline(
    stack: Stack, meeting: str, bodies: list[bytes], engine: str, overlap_s: float, workers: int
) -> str:
    """Upload every chunk first (so each finds its predecessor, as in process) and end the meeting (as
    the in-process run treats its last chunk), then let workers run."""
    for seq, body in enumerate(bodies):
        if stack.send(meeting, seq, body) != 201:
            raise Unmeasured(f"the gateway refused {meeting}/{seq}")
    if stack.post(f"/v1/meetings/{meeting}/end").status_code != 200:  # its last chunk keeps its last words
        raise Unmeasured(f"the gateway did not end {meeting}")
    env = {"AUDIOFLOW_STT_ENGINE": engine, "AUDIOFLOW_STT_OVERLAP_S": f"{overlap_s:g}"}
    procs = [stack.start_worker("processing", env) for _ in range(workers)]
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


def _cost(key: Key) -> float:
    """A rough decoding cost, so that the pool starts the longest passes first and its processes finish
    together: Whisper pays per call (it pads to 30 s), pocketsphinx per second of audio."""
    engine, audio, chunk_s, overlap_s = key
    seconds = 180.0 if audio == "meeting" else 95.0
    if chunk_s is None:
        return seconds * (0.2 if engine == "whisper" else 0.15)
    if engine == "whisper":
        return seconds / chunk_s * 0.35
    return seconds * (1 + overlap_s / chunk_s) * 0.15


def run(cfg: BenchConfig) -> Section:
    chunk_sizes = TINY_CHUNKS_S if cfg.tiny else CHUNKS_S
    cores = len(os.sched_getaffinity(0))
    keys: list[Key] = [
        (e, a, c, o)
        for e in ENGINES
        for a in AUDIO
        for c, o in [(None, 0.0)] + [(c, o) for c in chunk_sizes for o in (OVERLAP_S[e], 0.0)]
    ]
    # One worker decodes the chunks in order from a fresh start, as a pass in process does; as many
    # workers as cores is how this box runs, each decoder then hearing a different part of the meeting.
    # On the meeting only (on the fixture, the in-process figures stand for it: they are equal);
    # the smoke test's for the default engine only.
    many = [] if cfg.tiny or cores == 1 else [cores]
    runs = [
        (e, a, o, n)
        for e in (ENGINES[:1] if cfg.tiny else ENGINES)
        for a in ["meeting"]
        for o, n in [(OVERLAP_S[e], 1), (0.0, 1)] + [(OVERLAP_S[e], n) for n in many]
    ]
    audio = {a: load_audio(a, cfg.tiny) for a in AUDIO}  # decodes the prompts into the cache once
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=cores, mp_context=spawn) as pool:
        futures = {k: pool.submit(_decode, k, cfg.tiny) for k in sorted(keys, key=_cost, reverse=True)}
        # the pipeline runs meanwhile: WER does not depend on the machine's load, only the wall time does
        with bench_stack(cfg, "wer", **production_env()) as stack:
            stack.start_api()
            texts = {
                (e, a, o, n): _pipeline(
                    stack,
                    f"wer-{e}-{a}-{'stitched' if o else 'plain'}-{n}",
                    cut_chunks(audio[a].fmt, audio[a].pcm, PIPELINE_CHUNK_S),
                    e,
                    o,
                    n,
                )
                for e, a, o, n in runs
            }
        decoded = {k: f.result() for k, f in futures.items()}
    references = {a: list(x.references) for a, x in audio.items()}
    if cfg.tiny:  # the fixture's excerpt has no reference text of its own: each engine's whole decode
        references["flite"] = decoded[(ENGINES[0], "flite", None, 0.0)]
    wer: dict[Key, float] = {k: score(k[1], references[k[1]], t) for k, t in decoded.items()}
    piped = {r: score(r[1], references[r[1]], [t]) for r, t in texts.items()}
    return _report(cfg, chunk_sizes, audio, wer, piped)


def _cell(value: float | None, whole: float) -> str:
    return "not run" if value is None else f"{value:.3f} ({100 * (value - whole):+.1f})"


def _table(
    audio: str,
    chunk_sizes: tuple[float, ...],
    wer: dict[Key, float],
    piped: dict[tuple[str, str, float, int], float],
) -> str:
    whole = {e: wer[(e, audio, None, 0.0)] for e in ENGINES}
    headers = ["decoded as"]
    for e in ENGINES:
        headers += [f"{e} stitched ({OVERLAP_S[e]:g} s overlap)", f"{e} plain (no overlap)"]
    rows = [["whole (each utterance alone)" if audio == "meeting" else "whole file, one piece"]]
    for e in ENGINES:
        rows[0] += [f"{whole[e]:.3f}", ""]
    workers = sorted({n for _, a, _, n in piped if a == audio})
    for c in chunk_sizes:
        rows.append([f"{c:g} s chunks, in process"])
        for e in ENGINES:
            rows[-1] += [_cell(wer[(e, audio, c, o)], whole[e]) for o in (OVERLAP_S[e], 0.0)]
        for n in workers if c == PIPELINE_CHUNK_S else []:
            rows.append([f"{c:g} s chunks, through the pipeline, {n} worker{'s' if n > 1 else ''}"])
            for e in ENGINES:
                rows[-1] += [_cell(piped.get((e, audio, o, n)), whole[e]) for o in (OVERLAP_S[e], 0.0)]
    return md_table(headers, rows)


def _goals(wer: dict[Key, float], piped: dict[tuple[str, str, float, int], float]) -> tuple[str, list[str]]:
    """The goals on the meeting, per engine: a table and the default engine's verdicts."""
    rows = []
    verdicts = []
    for e in ENGINES:
        whole = wer[(e, "meeting", None, 0.0)]
        at = {
            5.0: piped.get((e, "meeting", OVERLAP_S[e], 1)),
            2.0: wer.get((e, "meeting", 2.0, OVERLAP_S[e])),
        }
        cells = [e, f"{whole:.3f}"]
        for c, limit in GOALS.items():
            value = at[c]
            if value is None:
                cells += ["not run", ""]
                continue
            met = value - whole <= limit + 1e-9
            cells += [_cell(value, whole), "met" if met else "**not met**"]
            if e == ENGINES[0]:
                verdicts.append(f"{'met' if met else 'NOT met'} at {c:g} s ({100 * (value - whole):+.1f})")
        rows.append(cells)
    table = md_table(
        [
            "engine",
            "whole-utterance WER",
            "5 s chunks, pipeline, 1 worker (points)",
            "goal: ≤ +1 point",
            "2 s chunks, in process (points)",
            "goal: ≤ +3 points",
        ],
        rows,
    )
    return table, verdicts


def _check(wer: dict[Key, float], piped: dict[tuple[str, str, float, int], float]) -> str:
    single = [(e, a, o) for e, a, o, n in piped if n == 1]
    differ = [
        (e, a, o) for e, a, o in single if abs(piped[(e, a, o, 1)] - wer[(e, a, PIPELINE_CHUNK_S, o)]) > 1e-9
    ]
    text = (
        "With one worker the pipeline's figures equal the in-process ones, as they should: the same chunks "
        "in the same order, each with its predecessor present and transcribed, on a decoder starting fresh."
        if not differ
        else "**With one worker the pipeline's figures differ from the in-process ones** for "
        + ", ".join(f"{e} on the {a} ({'stitched' if o else 'plain'})" for e, a, o in differ)
        + ", though the same chunks were decoded in order with their predecessors present: the worker does "
        "not do what the in-process path does."
    )
    many = [k for k in piped if k[3] > 1]
    if many:
        changed = sorted(
            {k[0] for k in many if abs(piped[k] - wer[(k[0], k[1], PIPELINE_CHUNK_S, k[2])]) > 1e-9}
        )
        text += (
            f" With several workers the figure differs for {', '.join(changed)}: a chunk may be decoded "
            "before its predecessor is transcribed (then stitched by word times alone), and pocketsphinx's "
            "decoder keeps state from one utterance to the next."
            if changed
            else " With several workers the figures are the same too."
        )
    return text


def _report(
    cfg: BenchConfig,
    chunk_sizes: tuple[float, ...],
    audio: dict[str, Audio],
    wer: dict[Key, float],
    piped: dict[tuple[str, str, float, int], float],
) -> Section:
    meeting = audio["meeting"]
    words = sum(len(r.split()) for r in meeting.references)
    tiny = (
        f"**Tiny run**: the meeting's first {TINY_UTTERANCES} utterances, and the first {TINY_AUDIO_S:g} s "
        "of the fixture scored against the default engine's one-piece decode: not quality figures.\n\n"
        if cfg.tiny
        else ""
    )
    goals, verdicts = _goals(wer, piped)
    parts = [
        tiny + (__doc__ or "").split("\n\n", 1)[1].strip(),
        f"Each cell: WER (points above the same engine's whole WER). The meeting: {meeting.seconds:.0f} s, "
        f"{len(meeting.pieces)} utterances, {words} reference words; the fixture: "
        f"{audio['flite'].seconds:.0f} s.",
    ]
    for name, title in AUDIO.items():
        parts += [f"### {title[0].upper()}{title[1:]}", _table(name, chunk_sizes, wer, piped)]
    parts += [
        _check(wer, piped),
        "### The goals, on the real-speech meeting",
        goals,
        _plot(cfg, chunk_sizes, wer),
    ]
    summary: dict[str, object] = {}
    for a in AUDIO:
        for e in ENGINES:
            figures = [f"{wer[(e, a, None, 0.0)]:.3f}"]
            figures += [
                f"{wer[(e, a, c, OVERLAP_S[e])]:.3f} / {wer[(e, a, c, 0.0)]:.3f}" for c in chunk_sizes
            ]
            sizes = " · ".join(f"{c:g} s" for c in chunk_sizes)
            summary[f"{e} on the {a}: WER whole · {sizes} stitched / plain"] = " · ".join(figures)
            if (e, a, OVERLAP_S[e], 1) in piped:
                summary[f"{e} on the {a}: WER 5 s through the pipeline (1 worker), stitched / plain"] = (
                    f"{piped[(e, a, OVERLAP_S[e], 1)]:.3f} / {piped[(e, a, 0.0, 1)]:.3f}"
                )
    summary["goals (default engine, meeting: 5 s ≤ +1 point, 2 s ≤ +3)"] = "; ".join(verdicts)
    return Section("Transcript quality", "\n\n".join(parts), summary)


def _plot(cfg: BenchConfig, chunk_sizes: tuple[float, ...], wer: dict[Key, float]) -> str:
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(AUDIO), figsize=(11, 4), sharey=True)
    x = list(chunk_sizes)
    for ax, (audio, title) in zip(axes, AUDIO.items(), strict=True):
        for e, color in zip(ENGINES, ("tab:blue", "tab:orange"), strict=True):
            o = OVERLAP_S[e]
            ax.plot(x, [wer[(e, audio, c, o)] for c in x], "o-", color=color, label=f"{e}, {o:g} s overlap")
            ax.plot(
                x, [wer[(e, audio, c, 0.0)] for c in x], "s--", color=color, alpha=0.6, label=f"{e}, plain"
            )
            ax.axhline(wer[(e, audio, None, 0.0)], color=color, ls=":", label=f"{e}, whole")
        ax.set_xscale("log")
        ax.set_xticks(x, [f"{c:g} s" for c in x])
        ax.minorticks_off()
        ax.set_ylim(bottom=0)
        ax.set_xlabel("chunk length")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("word error rate")
    axes[0].legend(fontsize=7)
    return save_plot(cfg, figure, "wer_vs_chunk")
