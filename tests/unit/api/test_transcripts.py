"""Transcript exports (txt, WebVTT, SRT). Where chunks sit on the timeline: core/test_timeline.py."""

from __future__ import annotations

import itertools

import pytest

from audioflow.api.schemas import SegmentPublic, WordPublic
from audioflow.api.transcripts import CUE_LINE_CHARS, CUE_MAX_S, as_srt, as_txt, as_vtt, cues


def seg(seq: int, start_s: float, end_s: float, text: str) -> SegmentPublic:
    return SegmentPublic(seq=seq, start_s=start_s, end_s=end_s, text=text, words=[])


SEGMENTS = [
    seg(0, 0.0, 1.5, "hello world"),
    seg(1, 5.25, 9.999, "second chunk"),
    seg(2, 12.0, 12.0, ""),  # nothing said: skipped everywhere
    seg(3, 13.0, 14.0, "   "),  # whitespace only: skipped too
    seg(7, 3725.0, 3727.1234, "over an hour in"),  # 1 h 2 min 5 s
    seg(8, 3730.0, 3730.0, "zero length"),  # end == start: the cue still lasts 1 ms
]


def test_txt() -> None:
    assert as_txt(SEGMENTS) == (
        "[00:00:00.000] hello world\n"
        "[00:00:05.250] second chunk\n"
        "[01:02:05.000] over an hour in\n"
        "[01:02:10.000] zero length\n"
    )


def test_vtt() -> None:
    assert as_vtt(SEGMENTS) == (
        "WEBVTT\n"
        "\n"
        "00:00:00.000 --> 00:00:01.500\n"
        "hello world\n"
        "\n"
        "00:00:05.250 --> 00:00:09.999\n"
        "second chunk\n"
        "\n"
        "01:02:05.000 --> 01:02:07.123\n"
        "over an hour in\n"
        "\n"
        "01:02:10.000 --> 01:02:10.001\n"
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
        "01:02:10,000 --> 01:02:10,001\n"
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


def test_cue_text_cannot_break_a_cue() -> None:
    hostile = [SegmentPublic(seq=0, start_s=0.0, end_s=1.0, text="a\n\nb --> c", words=[])]
    assert as_vtt(hostile) == "WEBVTT\n\n00:00:00.000 --> 00:00:01.000\na b -> c\n"
    assert as_srt(hostile) == "1\n00:00:00,000 --> 00:00:01,000\na b -> c\n"


def spoken(seq: int, offset: float, *words: tuple[str, float, float]) -> SegmentPublic:
    """A chunk's segment with word times (already on the meeting's timeline)."""
    timed = [WordPublic(text=t, start_s=offset + a, end_s=offset + b) for t, a, b in words]
    return SegmentPublic(
        seq=seq, start_s=offset, end_s=offset + 5, text=" ".join(t for t, _, _ in words), words=timed
    )


def test_cues_break_at_sentence_ends_across_chunks() -> None:
    segments = [
        spoken(0, 0.0, ("Good", 0.1, 0.4), ("morning.", 0.5, 0.9), ("Let", 4.2, 4.4), ("us", 4.5, 4.7)),
        spoken(1, 5.0, ("start", 0.0, 0.3), ("now.", 0.4, 0.8), ("Next", 1.0, 1.2)),
    ]
    found = cues(segments)
    assert [c.lines for c in found] == [("Good morning.",), ("Let us start now.",), ("Next",)]
    assert (found[1].start_s, found[1].end_s) == (4.2, 5.8)  # a sentence across the chunk boundary
    assert as_srt(segments).splitlines()[4:7] == ["2", "00:00:04,200 --> 00:00:05,800", "Let us start now."]


def test_cues_stay_short_and_on_two_lines() -> None:
    long_talk = [(f"word{i}", i * 0.4, i * 0.4 + 0.3) for i in range(60)]  # 24 s, no sentence end
    found = cues([spoken(0, 0.0, *long_talk)])
    assert len(found) > 3
    for cue in found:
        assert cue.end_s - cue.start_s <= CUE_MAX_S
        assert len(cue.lines) <= 2 and all(len(line) <= CUE_LINE_CHARS for line in cue.lines)
    assert " ".join(" ".join(c.lines) for c in found).split() == [w for w, _, _ in long_talk]
    assert all(a.end_s <= b.start_s for a, b in itertools.pairwise(found))


def test_a_long_pause_ends_a_cue() -> None:
    found = cues([spoken(0, 0.0, ("so", 0.0, 0.2), ("anyway", 3.0, 3.4))])
    assert [c.lines for c in found] == [("so",), ("anyway",)]
