"""The transcript on the meeting's timeline, and its text exports (txt, WebVTT, SRT)."""

from __future__ import annotations

from collections.abc import Sequence

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


def as_vtt(segments: Sequence[SegmentPublic]) -> str:
    cues = [
        f"{s.seq}\n{_stamp(s.start_s, '.')} --> {_stamp(max(s.end_s, s.start_s + 0.001), '.')}\n{s.text}\n"
        for s in _spoken(segments)
    ]
    return "WEBVTT\n\n" + "\n".join(cues)


def as_srt(segments: Sequence[SegmentPublic]) -> str:
    cues = [
        f"{index}\n{_stamp(s.start_s, ',')} --> {_stamp(max(s.end_s, s.start_s + 0.001), ',')}\n{s.text}\n"
        for index, s in enumerate(_spoken(segments), start=1)
    ]
    return "\n".join(cues)
