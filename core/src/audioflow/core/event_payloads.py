"""The ``data`` of each event type (``events.EventType``), defined once for every publisher.

TypedDicts rather than classes: the payload goes to ``json.dumps`` as it is, so a typed dict costs
nothing at run time while mypy checks each publisher's keys and values against the wire shape."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, NotRequired, TypedDict

if TYPE_CHECKING:  # not at run time: publishers without the database layer import this module
    from audioflow.core.db.queries import Phase

__all__ = [
    "ChunkFailed",
    "ChunkReceived",
    "ChunkTranscribed",
    "LogLine",
    "MeetingPhase",
    "RecordingExtended",
]


class ChunkReceived(TypedDict):
    seq: int
    bytes: int
    duration_s: float


class ChunkTranscribed(TypedDict):
    seq: int
    text: str
    words: Any  # the engine's words as stored with the segment
    duration_s: float
    start_s: float  # the chunk's start on the meeting's timeline


class RecordingExtended(TypedDict):
    concatenated_through: int
    duration_s: float
    bytes: int
    appended: list[int]  # seqs appended by this step
    gaps: list[int]  # seqs bridged by silence in this step


class ChunkFailed(TypedDict):
    stage: Literal["transcribe", "concat"]
    reason: str
    seq: NotRequired[int]  # transcribe: the chunk that failed
    code: NotRequired[str]  # concat: why the whole recording failed


class MeetingPhase(TypedDict):
    phase: Phase


class LogLine(TypedDict):
    level: str
    component: str
    message: str
    seq: int | None
