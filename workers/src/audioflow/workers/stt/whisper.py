"""Optional engine: faster-whisper with a model directory supplied by the operator.

Much more accurate than pocketsphinx, much heavier on CPU (only tiny/base are practical on 2 cores).
It never downloads: the model must already be a local CTranslate2 directory. Not exercised in CI
beyond the missing-package error, because neither the package nor a model is installed there.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np

from audioflow.workers.stt.base import Word

INSTALL_HINT = (
    "the whisper STT engine needs faster-whisper: install `audioflow-workers[whisper]` and set "
    "AUDIOFLOW_WHISPER_MODEL_PATH to a local faster-whisper (CTranslate2) model directory"
)


class WhisperEngine:
    """A faster-whisper model loaded once from a local directory, on CPU with int8 weights."""

    name = "whisper"
    sample_rate = 16000

    def __init__(self, *, language: str = "en-us", model_path: Path | None = None) -> None:
        """Load the model; raise RuntimeError naming the fix when the package or model is missing.

        `model_path` comes from settings (AUDIOFLOW_WHISPER_MODEL_PATH); it is not read here.
        """
        try:
            faster_whisper: Any = importlib.import_module("faster_whisper")
        except ImportError as exc:
            raise RuntimeError(INSTALL_HINT) from exc
        if model_path is None or not Path(model_path).is_dir():
            raise RuntimeError(f"{INSTALL_HINT} (got model path {model_path!s})")
        self._language = language.split("-")[0].lower()  # whisper takes "en", not "en-us"
        self._model = faster_whisper.WhisperModel(
            str(model_path), device="cpu", compute_type="int8", local_files_only=True
        )

    def transcribe(self, pcm: bytes) -> list[Word]:
        """Decode s16le mono 16 kHz PCM; whisper's own VAD is off so times stay relative to `pcm`."""
        audio = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
        segments, _info = self._model.transcribe(
            audio, language=self._language, word_timestamps=True, vad_filter=False, beam_size=1
        )
        words: list[Word] = []
        for segment in segments:
            for w in segment.words or ():
                text = str(w.word).strip()
                if text:
                    words.append(Word(text=text, start_s=float(w.start), end_s=float(w.end)))
        return words
