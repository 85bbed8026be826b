"""Where each chunk sits on the meeting's timeline."""

from __future__ import annotations

from collections.abc import Iterable


def chunk_starts(
    durations: Iterable[tuple[int, float]], gaps: Iterable[tuple[int, float]] = ()
) -> dict[int, float]:
    """Start time (s) of each seq: the audio of every earlier seq, chunks and bridged gaps alike.

    ``durations`` and ``gaps`` are ``(seq, seconds)`` pairs. A seq still missing (neither received nor
    bridged) adds nothing until it arrives, so later starts are provisional until then.
    """
    lengths = dict(durations)
    for seq, seconds in gaps:
        lengths.setdefault(seq, seconds)
    starts, elapsed = {}, 0.0
    for seq in sorted(lengths):
        starts[seq] = elapsed
        elapsed += lengths[seq]
    return starts
