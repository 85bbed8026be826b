"""The speech-to-text engine interface, PCM conversion for engines, and overlap stitching of chunks.

Chunks arrive cut at arbitrary points, so the words at their edges are cut too; that is the main
accuracy loss of per-chunk STT. `transcribe_chunk` decodes a short tail of the previous chunk in
front of this one, so a word cut at the boundary is seen whole, and then keeps only the words that
belong to this chunk (see `transcribe_chunk` and `boundary_cut_s` for the rule and why).
"""

from __future__ import annotations

import difflib
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from audioflow.core.wav import AudioFormat

#: A chunk's boundary is moved at least this far before its end: a word sounding that close to the
#: end was probably cut, so it is left to the next chunk, which hears it whole thanks to the overlap.
DEFAULT_EDGE_S = 0.1
_GUARD_S = 0.4  # the cut stays this far inside the overlap, so the next chunk hears the word after it whole
_FRAME_S = 0.01  # energy frame for finding the cut, as the decoder's 100 frames/s
_SMOOTH_S = 0.03  # the quiet stretch looked for
_ALIGN_WORDS = 4  # the predecessor's last words looked for in this chunk's decode of the overlap
_ALIGN_S = 1.0  # how far past the cut they may be found (Whisper's times drift between decodes)
_SINGLE_WORD_S = 0.6  # a one-word match counts only this close to the cut
_MISSED_S = 1.0  # the predecessor's words not heard again: ours this close before the cut are kept
_ALIKE = 0.5  # difflib ratio from which a word counts as a re-hearing of another
_NOT_WORD = re.compile(r"[^\w']+")


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
    #: How much of the predecessor's audio to decode in front of a chunk when
    #: ``AUDIOFLOW_STT_OVERLAP_S`` does not say (what this engine needs to hear a cut word whole).
    default_overlap_s: float

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


def boundary_cut_s(tail: bytes, rate: int, *, overlap_s: float, edge_s: float) -> float:
    """How far before the end of a chunk its boundary is moved, from the chunk's last `overlap_s`.

    `tail` is that last stretch as engine PCM (s16le mono at `rate`). The cut goes at the quietest
    30 ms from 0.4 s after the start of the overlap (the next chunk must hear the word after the cut
    whole) to `edge_s` before the end; the latest one on ties, so silence gives exactly `edge_s`; at
    `edge_s` if that window is empty (overlap shorter than 0.4 s + `edge_s`). Why the quietest point:
    it is usually a gap between words, so no word straddles it and the two chunks' decoders, whose
    word times differ by a frame or two, still agree which side each word is on. Why from the audio:
    chunk N and N+1 both see these same bytes, so both compute the same cut, deterministically.
    """
    samples = np.frombuffer(tail, dtype="<i2").astype(np.float64)
    hop = max(1, round(rate * _FRAME_S))
    frames = len(samples) // hop
    tail_s = len(samples) / rate
    first = math.ceil(round((max(0.0, tail_s - overlap_s) + _GUARD_S) * rate / hop, 6))
    last = min(frames - 1, math.floor(round((tail_s - edge_s) * rate / hop, 6)))
    if last < first:
        return edge_s
    energy = (samples[: frames * hop].reshape(frames, hop) ** 2).mean(axis=1)
    width = max(1, round(_SMOOTH_S / _FRAME_S))
    padded = np.pad(energy, (width // 2, width - 1 - width // 2), mode="edge")
    smooth = np.convolve(padded, np.ones(width) / width, mode="valid")
    window = smooth[first : last + 1]
    best = first + int(np.flatnonzero(window == window.min())[-1])
    return tail_s - best * hop / rate


def transcribe_chunk(
    engine: SttEngine,
    pcm: bytes,
    fmt: AudioFormat,
    previous_pcm: bytes | None,
    *,
    overlap_s: float,
    edge_s: float = DEFAULT_EDGE_S,
    previous_words: Sequence[str] = (),
    final: bool = False,
) -> Transcription:
    """Transcribe one chunk, decoding it behind the last `overlap_s` of the previous chunk's audio.

    Rule: every chunk boundary is moved earlier, to a cut at least `edge_s` before the chunk's end
    (at the quietest point there, see `boundary_cut_s`), and a word belongs to the chunk in which
    its midpoint falls. A word still being spoken when chunk N-1 ended was probably cut; it lies
    after the cut, so N-1 drops it and N, whose overlap lets the decoder hear it whole, keeps it.
    The garbled fragment of a word cut by the start of the overlap lies before the cut, so N drops
    it. Midpoints rather than end times, because a cut in a gap between words is far from any
    midpoint, while end times sit right on it and differ by a frame between the two decodes, so the
    same word lands in both chunks or in neither (measured on the fixture with 1 s chunks, end
    times + a fixed edge doubled a word at ~1 boundary in 60; quiet cut + midpoints, ~1 in 300,
    and WER fell from 0.17 to 0.16 at 1 s chunks and from 0.15 to 0.14 at 2 s).

    Without `previous_pcm` (first chunk, or the predecessor has not arrived) the chunk is decoded
    alone and only its own trailing cut applies. A `final` chunk (the last of an ended meeting) has no
    trailing cut: no successor will hear its last words, so it keeps them all. `overlap_s` <= 0 turns
    stitching off: all words kept.
    Word times are relative to the start of this chunk: negative for a word begun in the overlap.

    With `previous_words` (what the predecessor kept, when it is already transcribed) the start is
    found by text instead (see `resume_index`): Whisper's word times drift by a few hundred ms between
    two decodes of the same audio, enough to put a word near the cut in both chunks or in neither.
    """
    rate = engine.sample_rate
    chunk = to_engine_pcm(pcm, fmt, rate)
    bytes_per_s = 2.0 * rate
    audio_s = len(chunk) / bytes_per_s
    lead = b""
    low, high = float("-inf"), float("inf")
    if overlap_s > 0:
        if not final:
            own_tail = to_engine_pcm(_tail(pcm, fmt, overlap_s), fmt, rate)
            high = audio_s - boundary_cut_s(own_tail, rate, overlap_s=overlap_s, edge_s=edge_s)
        if previous_pcm:
            lead = to_engine_pcm(_tail(previous_pcm, fmt, overlap_s), fmt, rate)
            low = -boundary_cut_s(lead, rate, overlap_s=overlap_s, edge_s=edge_s)
    lead_s = len(lead) / bytes_per_s

    started = time.perf_counter()
    decoded = engine.transcribe(lead + chunk) if chunk else []
    decode_s = time.perf_counter() - started

    shifted = [Word(w.text, w.start_s - lead_s, w.end_s - lead_s) for w in decoded]
    first = resume_index(shifted, previous_words, low) if lead else 0
    kept = tuple(
        w for i, w in enumerate(shifted) if (i >= first if lead else low <= _mid(w)) and _mid(w) < high
    )
    return Transcription(text=" ".join(w.text for w in kept), words=kept, audio_s=audio_s, decode_s=decode_s)


def _mid(word: Word) -> float:
    return (word.start_s + word.end_s) / 2


def _norm(text: str) -> str:
    return _NOT_WORD.sub("", text.lower())


def resume_index(decoded: Sequence[Word], previous_words: Sequence[str], cut_s: float) -> int:
    """Index of the first decoded word that belongs to this chunk.

    The overlap's words were the predecessor's to keep. When its last kept words are known, they are
    looked for among this decode's words up to `_ALIGN_S` past the cut (the longest run of the last
    `_ALIGN_WORDS` that matches, the latest place; a single word only close to the cut) and the chunk
    resumes right after them: a word the predecessor already has is not repeated, and a word it left
    out because it sounded after the cut is kept here. Otherwise, by time: the first word whose
    midpoint is at or after the cut.
    """
    by_time = next((i for i, w in enumerate(decoded) if _mid(w) >= cut_s), len(decoded))
    tail = [t for t in (_norm(w) for w in previous_words[-_ALIGN_WORDS:]) if t]
    said = [_norm(w.text) for w in decoded]
    reach = [i for i, w in enumerate(decoded) if _mid(w) < cut_s + _ALIGN_S]
    for size in range(len(tail), 0, -1):
        for end in reversed(reach):
            start = end - size + 1
            if start < 0 or said[start : end + 1] != tail[-size:]:
                continue
            if size == 1 and abs(_mid(decoded[end]) - cut_s) > _SINGLE_WORD_S:
                continue
            return end + 1
    # None of its last words was heard again. Words just before the cut are then ones it left out
    # (said after its own cut, which Whisper's drifting times put before ours), unless they sound like
    # its last words (a fragment of one: "words" of "backwards", "color" for "caller").
    first = by_time
    while (
        tail
        and first > 0
        and _mid(decoded[first - 1]) >= cut_s - _MISSED_S
        and not any(_alike(said[first - 1], t) for t in tail)
    ):
        first -= 1
    return first


def _alike(heard: str, said: str) -> bool:
    """Whether `heard` may be a re-hearing of `said`, or of its end."""
    return any(difflib.SequenceMatcher(a=heard, b=s).ratio() >= _ALIKE for s in (said, said[-len(heard) :]))


def load_engine(name: str, *, language: str = "en-us", model: str | None = None) -> SttEngine:
    """Build an engine by name: "whisper" (the default: faster-whisper, packaged tiny.en unless `model`
    names another) or "pocketsphinx" (the light one, its model in its wheel).

    Engines load their model here, once; reuse the engine for every chunk.
    """
    if name == "pocketsphinx":
        from audioflow.workers.stt.pocketsphinx import PocketsphinxEngine

        return PocketsphinxEngine(language=language)
    if name == "whisper":
        from audioflow.workers.stt.whisper import WhisperEngine

        return WhisperEngine(language=language, model=model)
    raise ValueError(f"unknown STT engine {name!r}; expected 'pocketsphinx' or 'whisper'")
