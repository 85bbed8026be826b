"""Speech-to-text: the engine interface, the engines, and chunk-overlap stitching."""

from audioflow.workers.stt.base import (
    DEFAULT_EDGE_S,
    SttEngine,
    Transcription,
    Word,
    boundary_cut_s,
    load_engine,
    resume_index,
    to_engine_pcm,
    transcribe_chunk,
)

__all__ = [
    "DEFAULT_EDGE_S",
    "SttEngine",
    "Transcription",
    "Word",
    "boundary_cut_s",
    "load_engine",
    "resume_index",
    "to_engine_pcm",
    "transcribe_chunk",
]
