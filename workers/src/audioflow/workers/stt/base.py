"""The speech-to-text engine interface, PCM conversion for engines, and overlap stitching of chunks.

Chunks arrive cut at arbitrary points, so the words at their edges are cut too; that is the main
accuracy loss of per-chunk STT. `transcribe_chunk` decodes a short tail of the previous chunk in
front of this one, so a word cut at the boundary is seen whole, and then keeps only the words that
belong to this chunk (see `transcribe_chunk` for the rule and why).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from audioflow.core.wav import AudioFormat

#: A word whose end lies within this many seconds of a chunk's end was probably cut by the chunk
#: boundary; it is left to the next chunk, which sees it whole thanks to the overlap.
DEFAULT_EDGE_S = 0.25


@dataclass(frozen=True)
class Word:
    """One recognised word; times in seconds relative to the start of the audio it came from."""

    text: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class Transcription:
    """The words kept for one chunk (times relative to the chunk's start) and what decoding cost."""

    text: str
    words: tuple[Word, ...]
    audio_s: float
    decode_s: float


class SttEngine(Protocol):
    """A speech-to-text engine. Engines are stateful and not thread-safe: one per worker thread."""

    name: str
    sample_rate: int

    def transcribe(self, pcm: bytes) -> list[Word]:
        """Decode s16le mono PCM at `sample_rate` as one utterance.

        Word times are relative to the start of `pcm`; fillers and silence tokens are left out.
        """
        ...


def _to_float_frames(pcm: bytes, fmt: AudioFormat) -> npt.NDArray[np.float32]:
    """Integer PCM (8-bit unsigned, 16/24/32-bit signed little-endian) to float32 (frames, channels)."""
    usable = len(pcm) - len(pcm) % fmt.block_align  # a torn trailing frame is dropped
    raw = np.frombuffer(pcm, dtype=np.uint8, count=usable)
    if fmt.bits == 8:
        samples = (raw.astype(np.float32) - 128.0) / 128.0
    elif fmt.bits == 16:
        samples = raw.view("<i2").astype(np.float32) / 32768.0
    elif fmt.bits == 24:
        triples = raw.reshape(-1, 3).astype(np.int32)
        ints = triples[:, 0] | (triples[:, 1] << 8) | (triples[:, 2] << 16)
        ints = np.where(ints >= 1 << 23, ints - (1 << 24), ints)
        samples = ints.astype(np.float32) / float(1 << 23)
    elif fmt.bits == 32:
        samples = (raw.view("<i4").astype(np.float64) / float(1 << 31)).astype(np.float32)
    else:
        raise ValueError(f"unsupported sample width: {fmt.bits} bits")
    return samples.reshape(-1, fmt.channels)


def to_engine_pcm(pcm: bytes, fmt: AudioFormat, rate: int) -> bytes:
    """Convert integer PCM of any width and channel count to mono s16le at `rate`.

    Channels are averaged (a meeting mix, not a channel pick); the rate is changed with soxr.
    16-bit mono already at `rate` is returned as is, which is the common case (Zoom RTMS, Recall).
    """
    if fmt.bits == 16 and fmt.channels == 1 and fmt.sample_rate == rate:
        return pcm[: len(pcm) - len(pcm) % 2]
    mono = _to_float_frames(pcm, fmt).mean(axis=1, dtype=np.float32)
    if fmt.sample_rate != rate and mono.size:
        import soxr

        mono = np.asarray(soxr.resample(mono, fmt.sample_rate, rate), dtype=np.float32)
    ints: npt.NDArray[np.int16] = np.clip(np.round(mono * 32768.0), -32768, 32767).astype("<i2")
    return ints.tobytes()


def _tail(pcm: bytes, fmt: AudioFormat, seconds: float) -> bytes:
    """The last `seconds` of `pcm`, cut on a frame boundary."""
    frames = len(pcm) // fmt.block_align
    keep = min(frames, round(seconds * fmt.sample_rate))
    end = frames * fmt.block_align
    return pcm[end - keep * fmt.block_align : end]


def transcribe_chunk(
    engine: SttEngine,
    pcm: bytes,
    fmt: AudioFormat,
    previous_pcm: bytes | None,
    *,
    overlap_s: float,
    edge_s: float = DEFAULT_EDGE_S,
) -> Transcription:
    """Transcribe one chunk, decoding it behind `overlap_s` of the previous chunk's audio.

    Rule: a word belongs to the chunk in which its end time falls, with every chunk boundary moved
    `edge_s` earlier. So chunk N keeps words ending in [-edge_s, duration - edge_s): a word still
    being spoken when chunk N-1 ended (it ends within `edge_s` of that end, so it was probably cut)
    is dropped from N-1 and kept in N, whose overlap lets the decoder hear it whole. The overlap must
    be longer than `edge_s` plus a long word for that to work. Without `previous_pcm` (first chunk,
    or the predecessor has not arrived) the chunk is decoded alone and only the trailing rule applies.

    Word times are relative to the start of this chunk: negative for a word begun in the overlap.
    """
    chunk = to_engine_pcm(pcm, fmt, engine.sample_rate)
    lead = b""
    if previous_pcm and overlap_s > 0:
        lead = to_engine_pcm(_tail(previous_pcm, fmt, overlap_s), fmt, engine.sample_rate)
    bytes_per_s = 2.0 * engine.sample_rate
    lead_s = len(lead) / bytes_per_s
    audio_s = len(chunk) / bytes_per_s

    started = time.perf_counter()
    decoded = engine.transcribe(lead + chunk) if chunk else []
    decode_s = time.perf_counter() - started

    low = -edge_s if lead else float("-inf")
    high = audio_s - edge_s
    kept = tuple(
        Word(w.text, w.start_s - lead_s, w.end_s - lead_s) for w in decoded if low <= w.end_s - lead_s < high
    )
    return Transcription(text=" ".join(w.text for w in kept), words=kept, audio_s=audio_s, decode_s=decode_s)


def load_engine(name: str, *, language: str = "en-us", model_path: Path | None = None) -> SttEngine:
    """Build an engine by name: "pocketsphinx" (offline, model in the wheel) or "whisper" (optional).

    Engines load their model here, once; reuse the engine for every chunk.
    """
    if name == "pocketsphinx":
        from audioflow.workers.stt.pocketsphinx import PocketsphinxEngine

        return PocketsphinxEngine(language=language, model_path=model_path)
    if name == "whisper":
        from audioflow.workers.stt.whisper import WhisperEngine

        return WhisperEngine(language=language, model_path=model_path)
    raise ValueError(f"unknown STT engine {name!r}; expected 'pocketsphinx' or 'whisper'")
