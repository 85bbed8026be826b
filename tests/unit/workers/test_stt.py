"""Speech-to-text: PCM conversion, the overlap-stitching rule, and pocketsphinx on real speech.

The WER figures are printed (run with `-s` to see them). Their bounds are loose on purpose: tests
guard against breakage; the figures themselves are measured and reported, not asserted tightly.
"""

from __future__ import annotations

import itertools
import math
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

import audioflow.workers
from audioflow.core.wav import AudioFormat
from audioflow.workers.stt import (
    SttEngine,
    Word,
    boundary_cut_s,
    load_engine,
    resume_index,
    to_engine_pcm,
    transcribe_chunk,
)
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
    default_overlap_s = 1.0

    def __init__(self, words: list[Word]) -> None:
        self.words = words
        self.seconds_heard: list[float] = []

    def transcribe(self, pcm: bytes) -> list[Word]:
        self.seconds_heard.append(len(pcm) / 2 / self.sample_rate)
        return list(self.words)


SILENCE_5S = bytes(5 * 16000 * 2)

# Decoded audio = 1.0 s of overlap + 5.0 s chunk, all silent, so both moved boundaries sit exactly
# edge_s = 0.25 s before a chunk end: at -0.25 and 4.75 in this chunk's time. Times are in
# decoded-audio seconds (what the engine reports); `kept` is (start, end) relative to the chunk.
STITCH_CASES = [
    ("inside the chunk", (3.0, 3.5), (2.0, 2.5)),
    ("entirely in the overlap", (0.2, 0.6), None),
    ("midpoint just before the moved boundary", (0.5, 0.99), None),
    ("midpoint exactly at the moved boundary", (0.55, 0.95), (-0.45, -0.05)),
    ("cut by the previous chunk's end, seen whole here", (0.7, 1.3), (-0.3, 0.3)),
    ("midpoint before this chunk's trailing cut", (5.3, 5.7), (4.3, 4.7)),
    ("midpoint at this chunk's trailing cut", (5.55, 5.95), None),
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
        assert (word.start_s, word.end_s) == pytest.approx(kept)
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


def test_the_final_chunk_keeps_the_words_after_its_trailing_cut() -> None:
    # The last chunk of an ended meeting: no successor will hear its last word, so it keeps it.
    engine = ScriptedFakeEngine([Word("a", 2.0, 2.5), Word("z", 5.6, 6.0)])
    result = transcribe_chunk(engine, SILENCE_5S, MONO16, SILENCE_5S, overlap_s=1.0, edge_s=0.25, final=True)
    assert result.text == "a z"
    assert result.words[-1].end_s == pytest.approx(5.0)


def test_words_keep_their_order_and_text_joins_them() -> None:
    engine = ScriptedFakeEngine([Word("a", 0.1, 0.5), Word("b", 1.2, 1.6), Word("c", 2.0, 2.4)])
    result = transcribe_chunk(engine, SILENCE_5S, MONO16, SILENCE_5S, overlap_s=1.0, edge_s=0.25)
    assert result.text == "b c"


def test_no_overlap_turns_stitching_off() -> None:
    engine = ScriptedFakeEngine([Word("a", 0.0, 0.2), Word("z", 4.7, 5.0)])
    result = transcribe_chunk(engine, SILENCE_5S, MONO16, SILENCE_5S, overlap_s=0.0, edge_s=0.25)
    assert engine.seconds_heard == [pytest.approx(5.0)]
    assert result.text == "a z"


def _tone(seconds: float, rate: int = 16000) -> npt.NDArray[np.int16]:
    """A 200 Hz tone: two whole periods per 10 ms frame, so every frame has the same energy."""
    period = (8000 * np.sin(2 * math.pi * np.arange(80) / 80)).astype(np.int16)
    return np.tile(period, round(seconds * rate) // 80 + 1)[: round(seconds * rate)]


@pytest.mark.parametrize(
    ("gap_before_end_s", "expected_cut_s"), [(0.5, 0.5), (0.3, 0.3), (0.05, 0.1), (0.8, 0.1)]
)
def test_the_boundary_moves_to_the_quiet_gap_inside_the_search_window(
    gap_before_end_s: float, expected_cut_s: float
) -> None:
    # A 1 s tail of flat tone with a 40 ms silent gap. For overlap 1.0 and edge 0.1 the cut is looked
    # for from 0.6 s to 0.1 s before the end; a gap outside that is ignored and, the tone being flat,
    # the latest frame (at the edge) wins.
    tone = _tone(1.0)
    start = round((1.0 - gap_before_end_s) * 16000)
    tone[start : start + 640] = 0
    cut = boundary_cut_s(tone.tobytes(), 16000, overlap_s=1.0, edge_s=0.1)
    assert cut == pytest.approx(expected_cut_s, abs=0.03)


def test_an_overlap_too_short_to_search_cuts_at_the_edge() -> None:
    assert boundary_cut_s(_tone(0.5).tobytes(), 16000, overlap_s=0.5, edge_s=0.25) == 0.25


class TimelineFakeEngine:
    """Test double: "hears" a scripted timeline and mimics a decoder at cut edges.

    The audio carries its own position: every sample holds the index of its 10 ms frame on the
    meeting's timeline. A word wholly inside the audio is reported as is; a word cut by either end of
    the audio is reported as a garbled fragment ("wo~") clipped to it, which is what a real decoder
    does with half a word.
    """

    name = "fake-timeline"
    sample_rate = 8000
    default_overlap_s = 1.0

    def __init__(self, script: list[Word]) -> None:
        self.script = script

    def transcribe(self, pcm: bytes) -> list[Word]:
        samples = np.frombuffer(pcm, dtype="<i2")
        start = int(samples[0]) / 100
        end = start + len(samples) / self.sample_rate
        heard = []
        for w in self.script:
            if w.end_s <= start or w.start_s >= end:
                continue
            whole = start <= w.start_s and w.end_s <= end
            lo, hi = max(w.start_s, start), min(w.end_s, end)
            heard.append(Word(w.text if whole else w.text[:2] + "~", lo - start, hi - start))
        return heard


def _stitch_all(
    engine: SttEngine, pcm: bytes, fmt: AudioFormat, chunk_s: float, *, overlap_s: float, edge_s: float
) -> list[Word]:
    """Cut `pcm` into chunks of `chunk_s` and transcribe them in order, as the worker does when each
    chunk's predecessor is already transcribed (its words passed on)."""
    step = round(chunk_s * fmt.sample_rate) * fmt.block_align
    words: list[Word] = []
    previous: bytes | None = None
    previous_words: tuple[str, ...] = ()
    for offset in range(0, len(pcm), step):
        chunk = pcm[offset : offset + step]
        result = transcribe_chunk(
            engine,
            chunk,
            fmt,
            previous,
            overlap_s=overlap_s,
            edge_s=edge_s,
            previous_words=previous_words,
            final=offset + step >= len(pcm),  # the meeting has ended after its last chunk
        )
        words.extend(result.words)
        previous, previous_words = chunk, tuple(w.text for w in result.words)
    return words


@pytest.mark.parametrize("chunk_s", [0.7, 1.0, 2.0, 3.3, 5.0])
def test_every_word_is_kept_exactly_once_across_boundaries(chunk_s: float) -> None:
    # Words of 0.2-0.55 s with 0.05-0.3 s gaps, so the boundaries cut many of them, even chunks
    # shorter than the overlap. It holds while words are shorter than twice the 0.4 s guard: the
    # fragment of a word cut by the overlap's start then has its midpoint before the cut.
    rng = np.random.default_rng(7)
    script, t = [], 0.0
    for i in range(60):
        duration = round(float(rng.uniform(0.2, 0.55)), 2)
        script.append(Word(f"word{i}", t, round(t + duration, 2)))
        t = round(t + duration + float(rng.uniform(0.05, 0.3)), 2)
    fmt = AudioFormat(sample_rate=8000, channels=1, bits=16)
    pcm = np.repeat(np.arange(round((t + 0.5) * 100), dtype="<i2"), 80).tobytes()
    stitched = _stitch_all(TimelineFakeEngine(script), pcm, fmt, chunk_s, overlap_s=1.0, edge_s=0.1)
    assert [w.text for w in stitched] == [w.text for w in script]


# --- engine loading ------------------------------------------------------------------------


def test_unknown_engine_and_unknown_language_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown STT engine"):
        load_engine("vosk")
    with pytest.raises(ValueError, match="no model for language 'fr-fr'"):
        load_engine("pocketsphinx", language="fr-fr")


# --- pocketsphinx on the real speech fixture -------------------------------------------------

CHUNK_S = 5.0
OVERLAP_S = 1.0  # the configured default (AUDIOFLOW_STT_OVERLAP_S)


@pytest.fixture(scope="module")
def speech() -> tuple[bytes, AudioFormat, str]:
    with wave.open(str(FIXTURES / "speech.wav"), "rb") as w:
        fmt = AudioFormat(w.getframerate(), w.getnchannels(), 8 * w.getsampwidth())
        pcm = w.readframes(w.getnframes())
    return pcm, fmt, (FIXTURES / "speech.txt").read_text()


@pytest.fixture(scope="module")
def engine() -> SttEngine:
    return load_engine("pocketsphinx")


@pytest.fixture(scope="module")
def whole_file_words(engine: SttEngine, speech: tuple[bytes, AudioFormat, str]) -> list[Word]:
    pcm, fmt, _ = speech
    return engine.transcribe(to_engine_pcm(pcm, fmt, engine.sample_rate))


def test_fixture_is_a_canonical_16_khz_mono_wav_of_a_minute_or_two() -> None:
    path = FIXTURES / "speech.wav"
    with wave.open(str(path), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        frames = w.getnframes()
    assert path.stat().st_size == 44 + 2 * frames
    assert 60 <= frames / 16000 <= 120
    lines = (FIXTURES / "speech.txt").read_text().splitlines()
    assert len(lines) >= 10
    assert all(line.strip() for line in lines)


def test_loading_the_engine_writes_nothing_to_stdout_or_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    load_engine("pocketsphinx").transcribe(bytes(16000))
    assert capfd.readouterr() == ("", "")


def test_whole_fixture_wer(whole_file_words: list[Word], speech: tuple[bytes, AudioFormat, str]) -> None:
    _, _, reference = speech
    wer = word_error_rate(reference, " ".join(w.text for w in whole_file_words))
    print(f"\npocketsphinx WER, whole fixture as one utterance: {wer:.3f}")
    assert wer <= 0.20
    assert all(w.text.isalpha() or "'" in w.text for w in whole_file_words), "fillers or (2) leaked"
    assert all(a.end_s <= b.start_s + 1e-9 for a, b in itertools.pairwise(whole_file_words))


def test_5_second_chunks_stitched_wer(engine: SttEngine, speech: tuple[bytes, AudioFormat, str]) -> None:
    pcm, fmt, reference = speech
    step = round(CHUNK_S * fmt.sample_rate) * fmt.block_align
    per_chunk: list[list[str]] = []
    previous = None
    for offset in range(0, len(pcm), step):
        chunk = pcm[offset : offset + step]
        result = transcribe_chunk(engine, chunk, fmt, previous, overlap_s=OVERLAP_S)
        per_chunk.append(result.text.split())
        previous = chunk
    wer = word_error_rate(reference, " ".join(" ".join(words) for words in per_chunk))
    print(f"\npocketsphinx WER, {CHUNK_S:g} s chunks stitched with {OVERLAP_S:g} s overlap: {wer:.3f}")
    assert wer <= 0.30
    # The reference never says the same word twice in a row, so a repeat across a boundary is a double.
    doubled = [
        (a[-1], i) for i, (a, b) in enumerate(itertools.pairwise(per_chunk)) if a and b and a[-1] == b[0]
    ]
    assert doubled == []


def test_a_word_cut_in_half_is_transcribed_once(
    engine: SttEngine, whole_file_words: list[Word], speech: tuple[bytes, AudioFormat, str]
) -> None:
    pcm, fmt, _ = speech
    target = next(w for w in whole_file_words if w.text == "engineering")
    cut = round((target.start_s + target.end_s) / 2 * fmt.sample_rate) * fmt.block_align
    first, second = pcm[:cut], pcm[cut : cut + 4 * fmt.sample_rate * fmt.block_align]

    a = transcribe_chunk(engine, first, fmt, None, overlap_s=OVERLAP_S)
    b = transcribe_chunk(engine, second, fmt, first, overlap_s=OVERLAP_S)
    stitched = [w.text for w in a.words + b.words]
    print(f"\ncut inside 'engineering': {a.text!r} | {b.text!r}")
    assert stitched.count("engineering") == 1
    assert "engineering" not in a.text.split()
    (word,) = (w for w in b.words if w.text == "engineering")
    assert word.start_s < 0 < word.end_s  # begun in the overlap, relative to the second chunk


# --- resuming after the predecessor's words (Whisper's times drift between two decodes) -------


def test_resume_skips_what_the_predecessor_already_has() -> None:
    decoded = [Word("live", -1.0, -0.8), Word("for", -0.8, -0.6), Word("all", -0.6, -0.4),
               Word("users.", -0.3, 0.0), Word("The", 0.2, 0.3)]  # fmt: skip
    # By time alone "users." (midpoint -0.15) is past the cut at -0.2: kept here and by the predecessor.
    assert resume_index(decoded, [], -0.2) == 3
    assert resume_index(decoded, ["is", "now", "live", "for", "all", "users."], -0.2) == 4


def test_resume_keeps_what_the_predecessor_left_out() -> None:
    decoded = [Word("status", -0.9, -0.7), Word("update", -0.7, -0.45), Word("Let", -0.4, -0.3),
               Word("us", -0.1, 0.1)]  # fmt: skip
    # "Let" sounds just before the cut in this decode, just after it in the predecessor's: both drop it.
    assert resume_index(decoded, [], -0.2) == 3
    assert resume_index(decoded, ["quick", "status", "update"], -0.2) == 2


def test_resume_matches_case_and_punctuation_blind_and_falls_back_to_time() -> None:
    decoded = [Word("End", -0.5, -0.3), Word("of", -0.3, -0.25), Word("it", 0.1, 0.2)]
    assert resume_index(decoded, ["the", "end,", "Of"], -0.2) == 2
    assert resume_index(decoded, [], -0.2) == 2  # nothing to match: by time
    far = [Word("the", -1.0, -0.9), Word("big", -0.6, -0.5), Word("cat", 0.0, 0.1)]
    # A lone common word far from the cut is no anchor; but neither is it a word the predecessor lacks.
    assert resume_index(far, ["the"], -0.2) == 1


def test_resume_keeps_overlap_words_the_predecessor_never_had() -> None:
    # Seen on real speech: the predecessor ended "...operating system." and left "For" to its successor,
    # whose decode puts "For" before the cut. Its last words are not in this decode, so by time alone
    # "For" would be dropped by both.
    decoded = [Word("For", -2.0, -0.62), Word("more", -0.62, -0.34), Word("information", -0.34, 0.36)]
    assert resume_index(decoded, ["the", "Linux", "operating", "system."], -0.8) == 0
    # ... but not a word it has, nor one that sounds like the end of its last ones (a fragment).
    fragment = [Word("words.", -2.0, -1.44), Word("Press", -1.2, -0.88), Word("8", -0.88, -0.32)]
    assert resume_index(fragment, ["to", "jump", "backwards."], -1.36) == 1
    misheard = [Word("color.", -1.48, -1.0), Word("The", 0.36, 0.68)]
    assert resume_index(misheard, ["an", "unknown", "caller."], -0.9) == 1
    # ... nor one long before the cut (1 s): the overlap's start is where garbled fragments are.
    early = [Word("so", -1.9, -1.7), Word("Hello", 0.1, 0.5)]
    assert resume_index(early, ["goodbye"], -0.1) == 1
