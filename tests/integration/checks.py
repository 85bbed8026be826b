"""Assertions shared by the pipeline tests: the recording is exact and every seq transcribed once."""

from __future__ import annotations

import io
import wave
from collections import Counter
from typing import Any

from audioflow.core.wav import canonical_header, parse_wav, pcm_view
from tests.integration.stack import Stack


def pcm_of(chunk: bytes) -> bytes:
    return bytes(pcm_view(chunk, parse_wav(chunk)))


def assert_recording_exact(stack: Stack, meeting_id: str, chunks: list[bytes]) -> None:
    """The recording is byte-for-byte one 44-byte header + every chunk's PCM in seq order."""
    expected_pcm = b"".join(pcm_of(chunk) for chunk in chunks)
    fmt = parse_wav(chunks[0]).format
    response = stack.get(f"/v1/meetings/{meeting_id}/recording.wav")
    assert response.status_code == 200, response.text
    assert response.content[:44] == canonical_header(fmt, len(expected_pcm))
    assert response.content == canonical_header(fmt, len(expected_pcm)) + expected_pcm
    with wave.open(io.BytesIO(response.content)) as reader:  # an independent reader agrees
        assert reader.getnframes() == len(expected_pcm) // fmt.block_align


def assert_transcribed_once(stack: Stack, meeting_id: str, count: int, events: list[dict[str, Any]]) -> None:
    transcript = stack.get(f"/v1/meetings/{meeting_id}/transcript").json()
    assert [segment["seq"] for segment in transcript["segments"]] == list(range(count))
    assert all(segment["error"] is None for segment in transcript["segments"])
    announced = [e["data"] for e in events if e["type"] == "chunk.transcribed"]
    transcribed = Counter(data["seq"] for data in announced)
    # The last chunk, transcribed while the meeting was live, is announced again when the meeting's end
    # gives it the words after its trailing cut (processing.handle); every other chunk exactly once.
    last = count - 1
    assert transcribed[last] in (1, 2) and transcribed - Counter({last: transcribed[last]}) == Counter(
        range(last)
    ), f"transcribed events per seq: {transcribed}"
    texts = {data["seq"]: data["text"] for data in announced}  # the latest event of each seq
    assert [texts.get(s["seq"]) for s in transcript["segments"]] == [
        s["text"] for s in transcript["segments"]
    ]


def assert_recording_events_monotonic(events: list[dict[str, Any]], last_seq: int) -> None:
    through = [e["data"]["concatenated_through"] for e in events if e["type"] == "recording.extended"]
    assert through, "no recording.extended event"
    assert through == sorted(through), f"concatenated_through went backwards: {through}"
    assert through[-1] == last_seq


def assert_completed_last(events: list[dict[str, Any]]) -> None:
    """A whole event history (not one read until ``completed``): ``completed`` is announced, and after
    the first one nothing but ``completed`` again and log lines (a follower may stop at it)."""
    phases = [
        i for i, e in enumerate(events) if e["type"] == "meeting.phase" and e["data"]["phase"] == "completed"
    ]
    assert phases, "completed was never announced"
    after = [
        (e["type"], e["data"].get("phase", e["data"].get("seq")))
        for e in events[phases[0] + 1 :]
        if e["type"] != "log" and not (e["type"] == "meeting.phase" and e["data"]["phase"] == "completed")
    ]
    assert not after, f"announced after completed: {after}"


def completed(events: list[dict[str, Any]]) -> bool:
    return any(e["type"] == "meeting.phase" and e["data"]["phase"] == "completed" for e in events)
