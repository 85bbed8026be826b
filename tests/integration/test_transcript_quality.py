"""Transcript quality through the whole pipeline, scored with WER.

- The default engine (Whisper tiny.en) on real human speech: the CI meeting of `tests.speech_corpus`
  (LibriVox reading among Asterisk prompts, ~34 s, from Debian's packages) in 5 s chunks. Measured
  in process: 0.012 whole, 0.024 in 5 s chunks; pocketsphinx gets 0.28 on the same audio.
- The light engine (pocketsphinx) on the synthetic speech fixture (flite), as before.
"""

from __future__ import annotations

from collections.abc import Callable

from audioflow.workers.simulate import cut_chunks, load_speech, reference_text
from audioflow.workers.stt.wer import real_speech_wer, word_error_rate
from tests.integration.stack import Stack
from tests.speech_corpus import ci_fixture

MAX_REAL_SPEECH_WER = 0.10  # Whisper tiny.en, 5 s chunks
MAX_FLITE_WER = 0.30  # pocketsphinx, 5 s chunks


def _through_pipeline(stack: Stack, meeting_id: str, chunks: list[bytes]) -> list[dict[str, object]]:
    for seq, chunk in enumerate(chunks):
        assert stack.send(meeting_id, seq, chunk) == 201
    assert stack.post(f"/v1/meetings/{meeting_id}/end").status_code == 200
    assert stack.wait_completed(meeting_id, timeout=240)["phase"] == "completed"
    segments: list[dict[str, object]] = stack.get(f"/v1/meetings/{meeting_id}/transcript").json()["segments"]
    assert [s["seq"] for s in segments] == list(range(len(chunks)))
    return segments


def test_real_speech_in_5s_chunks_with_the_default_engine(stack: Stack) -> None:
    meeting = ci_fixture()
    chunks = cut_chunks(meeting.fmt, meeting.pcm, 5.0)
    segments = _through_pipeline(stack, "real", chunks)
    hypothesis = " ".join(str(s["text"]) for s in segments)
    wer = real_speech_wer(meeting.reference, hypothesis)
    print(f"\nWER of {meeting.seconds:.0f} s of real speech in {len(chunks)} x 5 s chunks: {wer:.3f}")
    assert wer <= MAX_REAL_SPEECH_WER, hypothesis
    assert any(c.isupper() for c in hypothesis) and "." in hypothesis  # Whisper's casing and punctuation

    vtt = stack.get("/v1/meetings/real/transcript", params={"format": "vtt"})
    assert vtt.status_code == 200 and vtt.text.startswith("WEBVTT")
    cues = vtt.text.split("\n\n")[1:]
    assert cues, vtt.text
    for cue in cues:
        timing, *lines = cue.strip().splitlines()
        start, end = (_seconds(t) for t in timing.split(" --> "))
        assert 0 < end - start <= 7.0 and 1 <= len(lines) <= 2, cue


def _seconds(stamp: str) -> float:
    hours, minutes, seconds = stamp.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def test_flite_fixture_in_5s_chunks_with_pocketsphinx(make: Callable[..., Stack]) -> None:
    stack = make(AUDIOFLOW_STT_ENGINE="pocketsphinx")
    stack.start_api()
    stack.start_worker("processing")
    stack.start_worker("concat")
    fmt, pcm = load_speech()
    segments = _through_pipeline(stack, "wer", cut_chunks(fmt, pcm, 5.0))
    wer = word_error_rate(reference_text(), " ".join(str(s["text"]) for s in segments))
    print(f"\nWER of the flite fixture in 5 s chunks with pocketsphinx: {wer:.3f} (bound {MAX_FLITE_WER})")
    assert wer <= MAX_FLITE_WER
