"""Speech-to-text: PCM conversion, the overlap-stitching rule, and pocketsphinx on real speech.

The WER figures are printed (run with `-s` to see them); the bounds are loose on purpose, the
measured values and their history live in the STT notes, not in assertions.
"""

from __future__ import annotations

import importlib.util
import math
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import audioflow.workers
from audioflow.core.wav import AudioFormat
from audioflow.workers.stt import SttEngine, Word, load_engine, to_engine_pcm, transcribe_chunk
from audioflow.workers.stt.wer import word_error_rate

FIXTURES = Path(audioflow.workers.__file__).parent / "fixtures"
MONO16 = AudioFormat(sample_rate=16000, channels=1, bits=16)


def _s16(*values: int) -> bytes:
    return np.array(values, dtype="<i2").tobytes()


def _samples(pcm: bytes) -> list[int]:
    return [int(v) for v in np.frombuffer(pcm, dtype="<i2")]


# --- to_engine_pcm ---------------------------------------------------------------------------


def test_mono_16_bit_at_the_engine_rate_passes_through() -> None:
    pcm = _s16(1, -2, 300)
    assert to_engine_pcm(pcm, MONO16, 16000) == pcm


def test_stereo_is_downmixed_by_mean() -> None:
    pcm = _s16(1000, 3000, -500, 500, 32767, 32767)
    assert _samples(to_engine_pcm(pcm, AudioFormat(16000, 2, 16), 16000)) == [2000, 0, 32767]


def test_8_bit_is_unsigned_with_128_as_zero() -> None:
    pcm = bytes([128, 255, 0, 192])
    assert _samples(to_engine_pcm(pcm, AudioFormat(16000, 1, 8), 16000)) == [0, 32512, -32768, 16384]


def test_24_bit_little_endian_signed() -> None:
    values = [0, 256, -256, (1 << 23) - 1, -(1 << 23)]
    pcm = b"".join(v.to_bytes(3, "little", signed=True) for v in values)
    assert _samples(to_engine_pcm(pcm, AudioFormat(16000, 1, 24), 16000)) == [0, 1, -1, 32767, -32768]


def test_32_bit_little_endian_signed() -> None:
    values = [0, 1 << 16, -(1 << 31), (1 << 31) - 1]
    pcm = b"".join(v.to_bytes(4, "little", signed=True) for v in values)
    assert _samples(to_engine_pcm(pcm, AudioFormat(16000, 1, 32), 16000)) == [0, 1, -32768, 32767]


def test_48_khz_stereo_is_resampled_to_16_khz_mono() -> None:
    t = np.arange(48000) / 48000.0
    tone = (0.5 * np.sin(2 * math.pi * 440.0 * t) * 32767).astype("<i2")
    pcm = np.repeat(tone, 2).tobytes()  # both channels carry the tone
    out = np.frombuffer(to_engine_pcm(pcm, AudioFormat(48000, 2, 16), 16000), dtype="<i2")
    assert len(out) == 16000
    rms = float(np.sqrt(np.mean(out[1000:-1000].astype(np.float64) ** 2)))
    assert rms == pytest.approx(0.5 * 32767 / math.sqrt(2), rel=0.02)


def test_a_torn_trailing_frame_is_dropped() -> None:
    pcm = _s16(10, 20, 30) + b"\x01"
    assert _samples(to_engine_pcm(pcm, AudioFormat(16000, 1, 16), 16000)) == [10, 20, 30]
    assert _samples(to_engine_pcm(pcm, AudioFormat(16000, 3, 16), 16000)) == [20]


# --- stitching rule, with a fake engine ------------------------------------------------------


class ScriptedFakeEngine:
    """Test double: returns the same scripted words for any audio and records what it was given."""

    name = "fake"
    sample_rate = 16000

    def __init__(self, words: list[Word]) -> None:
        self.words = words
        self.seconds_heard: list[float] = []

    def transcribe(self, pcm: bytes) -> list[Word]:
        self.seconds_heard.append(len(pcm) / 2 / self.sample_rate)
        return list(self.words)


SILENCE_5S = bytes(5 * 16000 * 2)

# Decoded audio = 1.0 s of overlap + 5.0 s chunk; edge 0.25 s. Times are in decoded-audio seconds
# (what the engine reports); `kept` is the word's (start, end) relative to the chunk, or None.
STITCH_CASES = [
    ("inside the chunk", (3.0, 3.5), (2.0, 2.5)),
    ("entirely in the overlap", (0.2, 0.6), None),
    ("ends in the overlap just before the moved boundary", (0.3, 0.74), None),
    ("ends exactly at the moved boundary", (0.3, 0.75), (-0.7, -0.25)),
    ("cut by the previous chunk's end, seen whole here", (0.6, 0.9), (-0.4, -0.1)),
    ("crosses the boundary", (0.8, 1.3), (-0.2, 0.3)),
    ("ends before this chunk's trailing edge", (5.2, 5.74), (4.2, 4.74)),
    ("ends at this chunk's trailing edge", (5.3, 5.75), None),
    ("still being spoken at the end: left to the next chunk", (5.6, 6.0), None),
]


@pytest.mark.parametrize(("case", "decoded", "kept"), STITCH_CASES, ids=[c[0] for c in STITCH_CASES])
def test_stitching_rule_with_overlap(
    case: str, decoded: tuple[float, float], kept: tuple[float, float] | None
) -> None:
    engine = ScriptedFakeEngine([Word("w", *decoded)])
    result = transcribe_chunk(engine, SILENCE_5S, MONO16, SILENCE_5S, overlap_s=1.0, edge_s=0.25)
    assert engine.seconds_heard == [pytest.approx(6.0)]
    assert result.audio_s == pytest.approx(5.0)
    if kept is None:
        assert result.words == ()
        assert result.text == ""
    else:
        (word,) = result.words
        assert (word.start_s, word.end_s) == (pytest.approx(kept[0]), pytest.approx(kept[1]))
        assert result.text == "w"


# Without a predecessor the chunk is decoded alone: nothing is dropped at the start.
ALONE_CASES = [
    ("at the very start", (0.0, 0.1), (0.0, 0.1)),
    ("inside", (2.0, 2.5), (2.0, 2.5)),
    ("at the trailing edge", (4.6, 4.9), None),
]


@pytest.mark.parametrize(("case", "decoded", "kept"), ALONE_CASES, ids=[c[0] for c in ALONE_CASES])
def test_stitching_rule_without_previous_chunk(
    case: str, decoded: tuple[float, float], kept: tuple[float, float] | None
) -> None:
    engine = ScriptedFakeEngine([Word("w", *decoded)])
    result = transcribe_chunk(engine, SILENCE_5S, MONO16, None, overlap_s=1.0, edge_s=0.25)
    assert engine.seconds_heard == [pytest.approx(5.0)]
    assert [(w.start_s, w.end_s) for w in result.words] == ([] if kept is None else [kept])


def test_words_keep_their_order_and_text_joins_them() -> None:
    engine = ScriptedFakeEngine([Word("a", 0.1, 0.5), Word("b", 1.2, 1.6), Word("c", 2.0, 2.4)])
    result = transcribe_chunk(engine, SILENCE_5S, MONO16, SILENCE_5S, overlap_s=1.0, edge_s=0.25)
    assert result.text == "b c"


def test_overlap_is_taken_in_frames_of_the_chunk_format() -> None:
    stereo = AudioFormat(48000, 2, 16)
    engine = ScriptedFakeEngine([])
    chunk = bytes(48000 * 4)  # 1 s
    transcribe_chunk(engine, chunk, stereo, chunk, overlap_s=0.5, edge_s=0.1)
    assert engine.seconds_heard == [pytest.approx(1.5)]


class TimelineFakeEngine:
    """Test double: "hears" a scripted timeline and mimics a decoder at cut edges.

    The audio it is given carries its own position: every sample holds the index of its 10 ms frame
    on the meeting's timeline. A word wholly inside the audio is reported as is; a word cut by the
    end of the audio is reported as a garbled fragment ending there; a word cut by the start is
    reported as a fragment from there. That is what pocketsphinx does with cut words.
    """

    name = "fake-timeline"
    sample_rate = 100

    def __init__(self, script: list[Word]) -> None:
        self.script = script

    def transcribe(self, pcm: bytes) -> list[Word]:
        frames = np.frombuffer(pcm, dtype="<i2")
        start, end = int(frames[0]) / 100, (int(frames[-1]) + 1) / 100
        heard = []
        for w in self.script:
            if w.end_s <= start or w.start_s >= end:
                continue
            whole = start <= w.start_s and w.end_s <= end
            text = w.text if whole else w.text[:2] + "~"
            lo, hi = max(w.start_s, start), min(w.end_s, end)
            heard.append(Word(text, lo - start, hi - start))
        return heard


def _timeline_pcm(seconds: float) -> bytes:
    return np.arange(round(seconds * 100), dtype="<i2").tobytes()


def _stitch_all(
    engine: SttEngine, pcm: bytes, fmt: AudioFormat, chunk_s: float, *, overlap_s: float, edge_s: float
) -> list[str]:
    step = round(chunk_s * fmt.sample_rate) * fmt.block_align
    chunks = [pcm[i : i + step] for i in range(0, len(pcm), step)]
    words: list[str] = []
    previous = None
    for chunk in chunks:
        result = transcribe_chunk(engine, chunk, fmt, previous, overlap_s=overlap_s, edge_s=edge_s)
        words.extend(w.text for w in result.words)
        previous = chunk
    return words


@pytest.mark.parametrize("chunk_s", [0.7, 1.0, 2.0, 3.3, 5.0])
def test_every_word_is_kept_exactly_once_across_boundaries(chunk_s: float) -> None:
    # Words of 0.2-0.55 s with 0.05-0.3 s gaps: chunk boundaries cut many of them.
    rng = np.random.default_rng(7)
    script, t = [], 0.0
    for i in range(60):
        duration = round(float(rng.uniform(0.2, 0.55)), 2)
        script.append(Word(f"word{i}", t, t + duration))
        t = round(t + duration + float(rng.uniform(0.05, 0.3)), 2)
    fmt = AudioFormat(sample_rate=1000, channels=1, bits=16)  # AudioFormat's minimum; engine is 100 Hz
    pcm = _timeline_pcm(t + 0.5)
    stitched = _stitch_all(
        _ResampledTimeline(script), pcm, fmt, chunk_s, overlap_s=1.0, edge_s=0.6
    )
    assert stitched == [w.text for w in script]


class _ResampledTimeline(TimelineFakeEngine):
    """The timeline double at 1000 Hz input: to_engine_pcm would resample the frame indices, so this
    double asks for 1000 Hz and reads the indices as milliseconds instead."""

    sample_rate = 1000

    def transcribe(self, pcm: bytes) -> list[Word]:
        ms = np.frombuffer(pcm, dtype="<i2")
        return super().transcribe(np.round(ms[::10] / 10).astype("<i2").tobytes())
