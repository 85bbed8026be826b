"""The transcript on the meeting's timeline, and its text exports (txt, WebVTT, SRT)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from audioflow.api.schemas import SegmentPublic, WordPublic
from audioflow.core.db.models import Segment


def timeline(segments: Sequence[Segment], starts: dict[int, float]) -> list[SegmentPublic]:
    out = []
    for segment in segments:
        offset = starts.get(segment.seq, 0.0)
        out.append(
            SegmentPublic(
                seq=segment.seq,
                start_s=round(offset + segment.start_s, 3),
                end_s=round(offset + segment.end_s, 3),
                text=segment.text,
                words=[
                    WordPublic(
                        text=w["text"],
                        start_s=round(offset + w["start_s"], 3),
                        end_s=round(offset + w["end_s"], 3),
                    )
                    for w in segment.words
                ],
                error=segment.error,
            )
        )
    return out


def _stamp(seconds: float, separator: str) -> str:
    millis = max(0, round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def _spoken(segments: Sequence[SegmentPublic]) -> list[SegmentPublic]:
    """Segments with words, their text on one line with no cue arrow, so no cue can be broken."""
    return [
        segment.model_copy(update={"text": " ".join(segment.text.split()).replace("-->", "->")})
        for segment in segments
        if segment.text.strip()
    ]


def as_txt(segments: Sequence[SegmentPublic]) -> str:
    return "".join(f"[{_stamp(s.start_s, '.')}] {s.text}\n" for s in _spoken(segments))


#: Subtitle cues stay readable: at most this long on screen, this many lines of this many characters.
CUE_MAX_S = 7.0
CUE_LINES = 2
CUE_LINE_CHARS = 42
CUE_PAUSE_S = 1.5  # a silence this long ends a cue even mid-sentence
_SENTENCE_END = (".", "?", "!", "…")


@dataclass(frozen=True)
class Cue:
    start_s: float
    end_s: float
    lines: tuple[str, ...]


def _timed_words(segments: Sequence[SegmentPublic]) -> list[WordPublic]:
    """Every word on the meeting's timeline in order; a segment without word times counts as one."""
    words: list[WordPublic] = []
    for segment in _spoken(segments):
        words.extend(
            segment.words or [WordPublic(text=segment.text, start_s=segment.start_s, end_s=segment.end_s)]
        )
    return [
        w.model_copy(update={"text": " ".join(w.text.split()).replace("-->", "->")})
        for w in words
        if w.text.strip()
    ]


def _wrap(text: str) -> tuple[str, ...]:
    """One line, or two split at the space nearest the middle."""
    if len(text) <= CUE_LINE_CHARS or " " not in text:
        return (text,)
    middle = len(text) / 2
    cut = min((i for i, c in enumerate(text) if c == " "), key=lambda i: abs(i - middle))
    return (text[:cut], text[cut + 1 :])


def cues(segments: Sequence[SegmentPublic]) -> list[Cue]:
    """Subtitle cues built from the words, across chunk boundaries: a cue ends at a sentence end, at a
    long pause, or before it would run past :data:`CUE_MAX_S` or two lines of text."""
    out: list[Cue] = []
    current: list[WordPublic] = []

    def close() -> None:
        if current:
            start = max(current[0].start_s, out[-1].end_s if out else 0.0)
            end = max(current[-1].end_s, start + 0.001)
            out.append(Cue(start, end, _wrap(" ".join(w.text.strip() for w in current))))
            current.clear()

    for word in _timed_words(segments):
        if current:
            text = " ".join(w.text.strip() for w in [*current, word])
            too_long = word.end_s - current[0].start_s > CUE_MAX_S or len(text) > CUE_LINES * CUE_LINE_CHARS
            if too_long or word.start_s - current[-1].end_s > CUE_PAUSE_S:
                close()
        current.append(word)
        if word.text.strip().endswith(_SENTENCE_END):
            close()
    close()
    return out


def as_vtt(segments: Sequence[SegmentPublic]) -> str:
    blocks = [
        f"{_stamp(c.start_s, '.')} --> {_stamp(c.end_s, '.')}\n" + "\n".join(c.lines) + "\n"
        for c in cues(segments)
    ]
    return "WEBVTT\n\n" + "\n".join(blocks)


def as_srt(segments: Sequence[SegmentPublic]) -> str:
    blocks = [
        f"{index}\n{_stamp(c.start_s, ',')} --> {_stamp(c.end_s, ',')}\n" + "\n".join(c.lines) + "\n"
        for index, c in enumerate(cues(segments), start=1)
    ]
    return "\n".join(blocks)
