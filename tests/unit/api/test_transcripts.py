"""Transcript exports (txt, WebVTT, SRT) and where chunks sit on the meeting's timeline."""

from __future__ import annotations

import pytest

from audioflow.api.schemas import SegmentPublic
from audioflow.api.transcripts import as_srt, as_txt, as_vtt
from audioflow.core.timeline import chunk_starts


def seg(seq: int, start_s: float, end_s: float, text: str) -> SegmentPublic:
    return SegmentPublic(seq=seq, start_s=start_s, end_s=end_s, text=text, words=[])


SEGMENTS = [
    seg(0, 0.0, 1.5, "hello world"),
    seg(1, 5.25, 9.999, "second chunk"),
    seg(2, 12.0, 12.0, ""),  # nothing said: skipped everywhere
    seg(3, 13.0, 14.0, "   "),  # whitespace only: skipped too
    seg(7, 3725.0, 3727.1234, "over an hour in"),  # 1 h 2 min 5 s
    seg(8, 3727.5, 3727.5, "zero length"),  # end == start: the cue still lasts 1 ms
]


def test_txt() -> None:
    assert as_txt(SEGMENTS) == (
        "[00:00:00.000] hello world\n"
        "[00:00:05.250] second chunk\n"
        "[01:02:05.000] over an hour in\n"
        "[01:02:07.500] zero length\n"
    )


def test_vtt() -> None:
    assert as_vtt(SEGMENTS) == (
        "WEBVTT\n"
        "\n"
        "0\n"
        "00:00:00.000 --> 00:00:01.500\n"
        "hello world\n"
        "\n"
        "1\n"
        "00:00:05.250 --> 00:00:09.999\n"
        "second chunk\n"
        "\n"
        "7\n"
        "01:02:05.000 --> 01:02:07.123\n"
        "over an hour in\n"
        "\n"
        "8\n"
        "01:02:07.500 --> 01:02:07.501\n"
        "zero length\n"
    )


def test_srt() -> None:
    assert as_srt(SEGMENTS) == (
        "1\n"
        "00:00:00,000 --> 00:00:01,500\n"
        "hello world\n"
        "\n"
        "2\n"
        "00:00:05,250 --> 00:00:09,999\n"
        "second chunk\n"
        "\n"
        "3\n"
        "01:02:05,000 --> 01:02:07,123\n"
        "over an hour in\n"
        "\n"
        "4\n"
        "01:02:07,500 --> 01:02:07,501\n"
        "zero length\n"
    )


def test_empty_transcript() -> None:
    assert as_txt([]) == ""
    assert as_vtt([]) == "WEBVTT\n\n"
    assert as_srt([]) == ""
    only_silence = [seg(0, 0.0, 1.0, ""), seg(1, 1.0, 2.0, " ")]
    assert (as_txt(only_silence), as_vtt(only_silence), as_srt(only_silence)) == ("", "WEBVTT\n\n", "")


@pytest.mark.parametrize(
    ("seconds", "txt"),
    [
        (0.0, "[00:00:00.000] x\n"),
        (0.0004, "[00:00:00.000] x\n"),
        (0.0006, "[00:00:00.001] x\n"),  # rounded to the nearest millisecond
        (1.2344, "[00:00:01.234] x\n"),
        (59.9996, "[00:01:00.000] x\n"),  # rounding carries into the minutes
        (3599.9999, "[01:00:00.000] x\n"),  # ... and into the hours
        (36_000.0, "[10:00:00.000] x\n"),
        (360_000.0, "[100:00:00.000] x\n"),  # more than 99 hours widens the hour field
    ],
)
def test_timestamps(seconds: float, txt: str) -> None:
    assert as_txt([seg(0, seconds, seconds + 1, "x")]) == txt


CHUNK_STARTS: list[tuple[str, list[tuple[int, float]], list[tuple[int, float]], dict[int, float]]] = [
    ("empty", [], [], {}),
    ("contiguous", [(0, 1.0), (1, 2.0), (2, 0.5)], [], {0: 0.0, 1: 1.0, 2: 3.0}),
    ("unordered-input", [(2, 0.5), (0, 1.0), (1, 2.0)], [], {0: 0.0, 1: 1.0, 2: 3.0}),
    ("bridged-gap-counts", [(0, 1.0), (2, 1.0)], [(1, 4.0)], {0: 0.0, 1: 1.0, 2: 5.0}),
    ("leading-gap", [(1, 1.0)], [(0, 2.5)], {0: 0.0, 1: 2.5}),
    ("missing-seq-adds-nothing", [(0, 1.0), (3, 1.0)], [], {0: 0.0, 3: 1.0}),
    (
        "gap-and-missing",
        [(0, 1.0), (2, 1.0), (5, 1.0)],
        [(1, 0.5)],
        {0: 0.0, 1: 1.0, 2: 1.5, 5: 2.5},
    ),
    ("received-wins-over-gap", [(0, 1.0), (1, 2.0), (2, 1.0)], [(1, 9.0)], {0: 0.0, 1: 1.0, 2: 3.0}),
]


@pytest.mark.parametrize(
    ("durations", "gaps", "expected"),
    [case[1:] for case in CHUNK_STARTS],
    ids=[case[0] for case in CHUNK_STARTS],
)
def test_chunk_starts(
    durations: list[tuple[int, float]], gaps: list[tuple[int, float]], expected: dict[int, float]
) -> None:
    assert chunk_starts(durations, gaps) == pytest.approx(expected)


def test_chunk_starts_accepts_iterators() -> None:
    assert chunk_starts(iter([(0, 1.0), (1, 1.0)]), iter([])) == {0: 0.0, 1: 1.0}


def test_cue_text_cannot_break_a_cue() -> None:
    hostile = [SegmentPublic(seq=0, start_s=0.0, end_s=1.0, text="a\n\nb --> c", words=[])]
    assert as_vtt(hostile) == "WEBVTT\n\n0\n00:00:00.000 --> 00:00:01.000\na b -> c\n"
    assert as_srt(hostile) == "1\n00:00:00,000 --> 00:00:01,000\na b -> c\n"
