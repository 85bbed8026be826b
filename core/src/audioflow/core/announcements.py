"""What a meeting's followers have been told: the marks in its announced hash (``Keys.announced``), each
written with its event in one step (``events.publish_marked``).

The one owner of the marks' names, and of the rule that reads them: ``completed`` is announced only
after every event it sums up. A worker commits, then publishes; a peer's commit in between may finish
the meeting in the database while that event is still on its way. The peer then holds ``completed``
back, and the worker whose event was outstanding announces it after its own (both call
``announce_if_completed`` after every announcement), so followers that stop reading at ``completed``
miss nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

RECORDING = "recording"  # value: the concatenated_through last announced in recording.extended
RECORDING_FAILED = "failed:recording"
FINISHED = "finished"  # value: the finished phase announced (see meeting_phase)
WITH_TAIL = "tail"  # a transcribed mark's value when its event held the chunk's words to its end


def transcribed(seq: int) -> str:
    """``chunk.transcribed`` of ``seq``; its value is ``WITH_TAIL`` when the event held the tail."""
    return f"transcribed:{seq}"


def transcribed_tail(seq: int) -> str:
    """``chunk.transcribed`` of the last chunk again, once its words run to its end."""
    return f"transcribed-tail:{seq}"


def failed(seq: int) -> str:
    """``chunk.failed`` of ``seq`` (its transcription failed for good)."""
    return f"failed:{seq}"


@dataclass(frozen=True)
class Settled:
    """What the database says a completed meeting holds: each chunk's seq and whether its segment is a
    failure, and how far its recording runs."""

    segments: Sequence[tuple[int, bool]]  # (seq, failed), one per chunk
    concatenated_through: int


def tail_announced(marks: Mapping[str, str], seq: int) -> bool:
    """Whether the last chunk's words to its end were announced (with its first event, or after it)."""
    return marks.get(transcribed(seq)) == WITH_TAIL or transcribed_tail(seq) in marks


@dataclass(frozen=True)
class Outstanding:
    """The events ``completed`` still waits for: the chunks whose ``chunk.transcribed`` or
    ``chunk.failed`` (or, for the last, its tail) is not out, and whether the recording's last
    ``recording.extended`` is not. False when there are none."""

    seqs: tuple[int, ...] = ()
    recording: bool = False

    def __bool__(self) -> bool:
        return bool(self.seqs) or self.recording


def outstanding(marks: Mapping[str, str], settled: Settled) -> Outstanding:
    """What of ``settled`` the ``marks`` do not show announced."""
    seqs = [
        seq
        for seq, is_failed in settled.segments
        if (failed(seq) if is_failed else transcribed(seq)) not in marks
    ]
    if settled.segments:
        last, last_failed = max(settled.segments)
        if not last_failed and last not in seqs and not tail_announced(marks, last):
            seqs.append(last)
    through = settled.concatenated_through
    return Outstanding(tuple(seqs), through >= 0 and marks.get(RECORDING) != str(through))
