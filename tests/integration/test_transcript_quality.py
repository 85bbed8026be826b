"""Transcript quality through the whole pipeline: the speech fixture in 5 s chunks, scored with WER."""

from __future__ import annotations

from audioflow.workers.simulate import cut_chunks, load_speech, reference_text
from audioflow.workers.stt.wer import word_error_rate
from tests.integration.stack import Stack

MAX_WER = 0.30


def test_fixture_in_5s_chunks_scores_wer_within_bound(stack: Stack) -> None:
    fmt, pcm = load_speech()
    chunks = cut_chunks(fmt, pcm, 5.0)
    for seq, chunk in enumerate(chunks):
        assert stack.send("wer", seq, chunk) == 201
    assert stack.post("/v1/meetings/wer/end").status_code == 200
    assert stack.wait_completed("wer", timeout=240)["phase"] == "completed"
    segments = stack.get("/v1/meetings/wer/transcript").json()["segments"]
    assert [s["seq"] for s in segments] == list(range(len(chunks)))
    hypothesis = " ".join(s["text"] for s in segments)
    wer = word_error_rate(reference_text(), hypothesis)
    print(f"\nWER of the {len(chunks)} x 5 s pipeline transcript: {wer:.3f} (bound {MAX_WER})")
    assert wer <= MAX_WER
    vtt = stack.get("/v1/meetings/wer/transcript", params={"format": "vtt"})
    assert vtt.status_code == 200 and vtt.text.startswith("WEBVTT")
