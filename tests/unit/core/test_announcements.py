"""core.announcements: which events ``completed`` still waits for, read from the announced marks."""

from __future__ import annotations

from audioflow.core import announcements as marks
from audioflow.core.announcements import Outstanding, Settled, outstanding

THREE = Settled(segments=[(0, False), (1, True), (2, False)], concatenated_through=2)


def _all_out() -> dict[str, str]:
    return {
        marks.transcribed(0): "1",
        marks.failed(1): "1",
        marks.transcribed(2): marks.WITH_TAIL,
        marks.RECORDING: "2",
    }


def test_nothing_outstanding_once_every_event_is_out() -> None:
    assert not outstanding(_all_out(), THREE)


def test_each_chunk_waits_for_its_own_kind_of_event() -> None:
    told = _all_out()
    del told[marks.transcribed(0)], told[marks.failed(1)]
    told[marks.transcribed(1)] = "1"  # a transcribed mark does not stand for a failed chunk's event
    assert outstanding(told, THREE) == Outstanding(seqs=(0, 1))


def test_the_last_chunk_waits_for_its_tail() -> None:
    told = _all_out()
    told[marks.transcribed(2)] = "1"  # announced while live, before its tail was kept
    assert outstanding(told, THREE) == Outstanding(seqs=(2,))
    told[marks.transcribed_tail(2)] = "1"
    assert not outstanding(told, THREE)


def test_a_failed_last_chunk_needs_no_tail() -> None:
    settled = Settled(segments=[(0, False), (1, True)], concatenated_through=1)
    told = {marks.transcribed(0): "1", marks.failed(1): "1", marks.RECORDING: "1"}
    assert not outstanding(told, settled)


def test_the_recording_waits_for_its_last_extension() -> None:
    told = _all_out()
    told[marks.RECORDING] = "1"  # recording.extended through seq 1 only
    assert outstanding(told, THREE) == Outstanding(recording=True)
    del told[marks.RECORDING]
    assert outstanding(told, THREE) == Outstanding(recording=True)


def test_a_meeting_without_chunks_waits_for_nothing() -> None:
    assert not outstanding({}, Settled(segments=[], concatenated_through=-1))
