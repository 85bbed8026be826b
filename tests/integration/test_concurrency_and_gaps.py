"""Several workers at once, gaps bridged with silence, and the simulator's command line."""

from __future__ import annotations

import contextlib
import json
import random
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import redis

from audioflow.core.wav import canonical_header
from audioflow.workers.simulate import cut_chunks, load_speech, plan
from tests import services
from tests.integration.checks import (
    assert_recording_events_monotonic,
    assert_recording_exact,
    assert_transcribed_once,
    completed,
    pcm_of,
)
from tests.integration.stack import Stack


def test_several_workers_of_each_kind_on_two_meetings(make: Callable[..., Stack]) -> None:
    stack = make()
    stack.start_api()
    for kind, count in (("processing", 2), ("concat", 3)):
        for _ in range(count):
            stack.start_worker(kind)
    fmt, pcm = load_speech()
    chunks = cut_chunks(fmt, pcm, 1.0, 20)
    deliveries = plan(["one", "two"], chunks, shuffle=True, duplicates=4, drop=set(), rng=random.Random(11))
    for meeting_id in ("one", "two"):
        assert stack.post("/v1/meetings", json={"id": meeting_id}).status_code == 201
    with stack.events("one") as ws_one, stack.events("two") as ws_two:
        statuses = [stack.send(d.meeting_id, d.seq, d.body) for d in deliveries]
        assert statuses.count(201) == 40 and statuses.count(200) == 4
        for meeting_id in ("one", "two"):
            assert stack.post(f"/v1/meetings/{meeting_id}/end").status_code == 200
        events = {"one": stack.read_events(ws_one, completed), "two": stack.read_events(ws_two, completed)}
    for meeting_id, got in events.items():
        assert_recording_exact(stack, meeting_id, chunks)
        assert_transcribed_once(stack, meeting_id, 20, got)
        assert_recording_events_monotonic(got, 19)


def test_missing_seq_is_bridged_with_silence_after_the_gap_timeout(make: Callable[..., Stack]) -> None:
    stack = make(AUDIOFLOW_GAP_TIMEOUT_S="2")
    stack.start_api()
    stack.start_worker("processing")
    stack.start_worker("concat")
    fmt, pcm = load_speech()
    chunks = cut_chunks(fmt, pcm, 1.0, 6)
    assert stack.post("/v1/meetings", json={"id": "gappy"}).status_code == 201
    with stack.events("gappy") as ws:
        for seq in (0, 1, 3, 4, 5):  # seq 2 never comes in time
            assert stack.send("gappy", seq, chunks[seq]) == 201
        events = stack.read_events(
            ws,
            lambda got: any(
                e["type"] == "recording.extended" and e["data"]["concatenated_through"] == 5 for e in got
            ),
        )
    status = stack.meeting("gappy")
    assert status["gaps"] == [2] and status["concatenated_through"] == 5
    assert status["chunks_concatenated"] == 5
    gap_events = [e for e in events if e["type"] == "recording.extended" and e["data"]["gaps"]]
    assert [e["data"]["gaps"] for e in gap_events] == [[2]]
    assert any(
        e["type"] == "log" and e["data"]["level"] == "warning" and "seq 2" in e["data"]["message"]
        for e in events
    )
    silence = b"\x00" * len(pcm_of(chunks[1]))  # as long as its predecessor
    pieces = [pcm_of(chunks[0]), pcm_of(chunks[1]), silence, *(pcm_of(chunks[s]) for s in (3, 4, 5))]
    expected = canonical_header(fmt, sum(map(len, pieces))) + b"".join(pieces)
    assert stack.get("/v1/meetings/gappy/recording.wav").content == expected

    # The late chunk is still accepted and transcribed, but the recording no longer changes.
    assert stack.send("gappy", 2, chunks[2]) == 201
    assert stack.post("/v1/meetings/gappy/end").status_code == 200
    final = stack.wait_completed("gappy")
    assert final["chunks_received"] == 6 and final["chunks_transcribed"] == 6 and final["gaps"] == [2]
    assert stack.get("/v1/meetings/gappy/recording.wav").content == expected


def test_simulate_command_sends_a_whole_meeting_with_progress(stack: Stack) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "audioflow.cli",
            "simulate",
            "--url",
            stack.base_url,
            "--meeting",
            "cli",
            "--meetings",
            "2",
            "--chunks",
            "8",
            "--chunk-seconds",
            "1",
            "--shuffle",
            "--duplicates",
            "2",
            "--drop",
            "7",
            "--seed",
            "4",
            "--end",
        ],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "sent 16/16 (100%)" in result.stderr
    assert "14 x HTTP 201" in result.stderr and "2 x HTTP 200" in result.stderr
    for meeting_id in ("cli-0", "cli-1"):
        status = stack.wait_completed(meeting_id)
        counts = (status["chunks_received"], status["chunks_transcribed"], status["concatenated_through"])
        assert counts == (7, 7, 6)


def test_a_chunk_that_always_fails_is_dead_lettered_and_reported(make: Callable[..., Stack]) -> None:
    stack = make(AUDIOFLOW_MAX_DELIVERIES="2", AUDIOFLOW_LEASE_MS="300")
    stack.start_api()
    fmt, pcm = load_speech()
    chunks = cut_chunks(fmt, pcm, 1.0, 3)
    for seq in range(3):
        assert stack.send("doomed", seq, chunks[seq]) == 201
    # Lose seq 1's file behind the system's back: transcription can never succeed for it.
    (stack.workdir / "data" / "meetings" / "doomed" / "chunks" / "00000001.wav").unlink()
    stack.start_worker("processing")
    assert stack.post("/v1/meetings/doomed/end").status_code == 200
    with stack.events("doomed") as ws:
        events = stack.read_events(ws, lambda got: any(e["type"] == "chunk.failed" for e in got))
    failed = next(e for e in events if e["type"] == "chunk.failed")
    assert failed["data"]["seq"] == 1 and failed["data"]["stage"] == "transcribe"
    assert "missing" in failed["data"]["reason"]

    def settled() -> dict[str, Any] | None:
        status = stack.meeting("doomed")
        return status if status["chunks_transcribed"] + status["chunks_failed"] == 3 else None

    status = stack.wait_until("every chunk transcribed or failed", settled)
    assert (status["chunks_transcribed"], status["chunks_failed"]) == (2, 1)
    segments = stack.get("/v1/meetings/doomed/transcript").json()["segments"]
    assert [(s["seq"], s["error"] is not None) for s in segments] == [(0, False), (1, True), (2, False)]
    dead = stack.env["AUDIOFLOW_REDIS_PREFIX"] + "transcribe:dead"
    client = redis.Redis.from_url(stack.env["REDIS_URL"], decode_responses=True)
    try:
        # The worker commits a chunk's outcome (and dead-letters a failed one) before it acks the entry
        # (at-least-once), so the meeting's status can show it settled a moment before that.
        stream = stack.env["AUDIOFLOW_REDIS_PREFIX"] + "transcribe"
        services.eventually(
            "no transcribe entry left pending",
            lambda: client.xpending(stream, "processing")["pending"] == 0,
            within=15.0,
            step=0.05,
        )
        entries: Any = client.xrange(dead)
        assert [(f["meeting_id"], f["seq"]) for _, f in entries] == [("doomed", "1")]
    finally:
        client.close()


def _drain(ws: Any, seconds: float) -> list[dict[str, Any]]:
    """Every event that arrives within ``seconds``."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        with contextlib.suppress(TimeoutError):
            got.append(json.loads(ws.recv(timeout=left)))
    return got


def _failures(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e["data"] for e in events if e["type"] == "chunk.failed"]


def test_a_gap_longer_than_the_maximum_fails_the_recording_once(make: Callable[..., Stack]) -> None:
    """seq 0 of 1 s, then seq 100 of one frame: bridging seqs 1-99 would add 99 s of silence (the 100x
    amplification of issue 13, row 4). Past AUDIOFLOW_MAX_GAP_S the recording fails once, clearly, and
    not one second of that silence is written."""
    stack = make(AUDIOFLOW_GAP_TIMEOUT_S="1", AUDIOFLOW_MAX_GAP_S="10")
    stack.start_api()
    stack.start_worker("concat")
    fmt, pcm = load_speech()
    [first] = cut_chunks(fmt, pcm, 1.0, 1)
    assert stack.post("/v1/meetings", json={"id": "amplified"}).status_code == 201
    with stack.events("amplified") as ws:
        assert stack.send("amplified", 0, first) == 201
        assert stack.send("amplified", 100, canonical_header(fmt, 2) + b"\x01\x00") == 201
        events = stack.read_events(ws, lambda got: bool(_failures(got)), timeout=60)
        events += _drain(ws, 2.5)  # several gap sweeps: none may fail it again
    [failure] = _failures(events)
    assert failure["stage"] == "concat" and failure["code"] == "gap_too_long", failure
    assert "AUDIOFLOW_MAX_GAP_S" in failure["reason"] and "1-99" in failure["reason"], failure
    status = stack.meeting("amplified")
    assert status["phase"] == "failed" and status["failed_reason"] == failure["reason"]
    assert status["gaps"] == [] and status["concatenated_through"] == 0
    recording = stack.get("/v1/meetings/amplified/recording.wav").content
    assert recording == canonical_header(fmt, len(pcm_of(first))) + pcm_of(first)


def test_a_recording_past_the_maximum_length_fails_once(make: Callable[..., Stack]) -> None:
    """AUDIOFLOW_MAX_MEETING_S caps the recording: the chunk that would pass it is not appended, the
    recording fails once with a chunk.failed naming the setting, and nothing after it is appended."""
    stack = make(AUDIOFLOW_MAX_MEETING_S="3")
    stack.start_api()
    stack.start_worker("concat")
    fmt, pcm = load_speech()
    chunks = cut_chunks(fmt, pcm, 1.0, 5)
    assert stack.post("/v1/meetings", json={"id": "long"}).status_code == 201
    with stack.events("long") as ws:
        for seq in range(5):
            assert stack.send("long", seq, chunks[seq]) == 201
        events = stack.read_events(ws, lambda got: bool(_failures(got)), timeout=60)
        events += _drain(ws, 2.5)
    [failure] = _failures(events)
    assert failure["stage"] == "concat" and failure["code"] == "meeting_too_long", failure
    assert "AUDIOFLOW_MAX_MEETING_S" in failure["reason"] and "seq 3" in failure["reason"], failure
    status = stack.meeting("long")
    assert status["phase"] == "failed" and status["concatenated_through"] == 2
    assert status["recording_duration_s"] == 3.0
    held = b"".join(pcm_of(c) for c in chunks[:3])
    assert stack.get("/v1/meetings/long/recording.wav").content == canonical_header(fmt, len(held)) + held
