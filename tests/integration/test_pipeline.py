"""The pipeline end to end: real gateway and worker processes, real Redis, PostgreSQL and SQLite."""

from __future__ import annotations

import random
import signal
import time
from collections import Counter
from collections.abc import Callable

import httpx

from audioflow.workers.simulate import Delivery, cut_chunks, load_speech, plan
from tests.integration.checks import (
    assert_recording_events_monotonic,
    assert_recording_exact,
    assert_transcribed_once,
    completed,
)
from tests.integration.stack import Stack
from tests.services import free_port


def _send_all(stack: Stack, deliveries: list[Delivery]) -> Counter[int]:
    return Counter(stack.send(d.meeting_id, d.seq, d.body) for d in deliveries)


def test_shuffled_meeting_with_duplicates_is_recorded_in_order_and_transcribed_once(stack: Stack) -> None:
    fmt, pcm = load_speech()
    chunks = cut_chunks(fmt, pcm, 1.0, 30)
    deliveries = plan(["shuffled"], chunks, shuffle=True, duplicates=3, drop=set(), rng=random.Random(3))
    assert [d.seq for d in deliveries] != sorted(d.seq for d in deliveries)
    assert stack.post("/v1/meetings", json={"id": "shuffled"}).status_code == 201
    with stack.events("shuffled") as ws:
        assert _send_all(stack, deliveries) == {201: 30, 200: 3}
        assert stack.post("/v1/meetings/shuffled/end").status_code == 200
        events = stack.read_events(ws, completed)
    assert all(e["meeting_id"] == "shuffled" for e in events)
    assert sorted(e["data"]["seq"] for e in events if e["type"] == "chunk.received") == list(range(30))
    assert_recording_exact(stack, "shuffled", chunks)
    assert_transcribed_once(stack, "shuffled", 30, events)
    assert_recording_events_monotonic(events, 29)
    status = stack.meeting("shuffled")
    assert (status["chunks_received"], status["chunks_transcribed"], status["chunks_concatenated"]) == (
        30,
        30,
        30,
    )
    assert status["phase"] == "completed" and status["gaps"] == []


def _busy(metrics_port: int, group: str) -> bool:
    try:
        text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=1).text
    except httpx.HTTPError:
        return False
    return f'audioflow_worker_busy{{component="{group}"}} 1.0' in text


def test_workers_killed_mid_chunk_and_restarted_lose_and_double_nothing(make: Callable[..., Stack]) -> None:
    stack: Stack = make()
    stack.start_api()
    processing_port = free_port()
    doomed = stack.start_worker("processing", {"AUDIOFLOW_METRICS_PORT": str(processing_port)})
    doomed_concat = stack.start_worker("concat")
    fmt, pcm = load_speech()
    chunks = cut_chunks(fmt, pcm, 4.0, 12)
    deliveries = plan(["killed"], chunks, shuffle=True, duplicates=2, drop=set(), rng=random.Random(5))
    assert stack.post("/v1/meetings", json={"id": "killed"}).status_code == 201
    with stack.events("killed") as ws:
        assert _send_all(stack, deliveries) == {201: 12, 200: 2}
        # Wait until the processing worker is inside a chunk (decoding), then kill both workers outright.
        stack.wait_until(
            "the processing worker to be mid-chunk", lambda: _busy(processing_port, "processing"), every=0.02
        )
        doomed.send_signal(signal.SIGKILL)
        doomed_concat.send_signal(signal.SIGKILL)
        doomed.wait(10)
        doomed_concat.wait(10)
        mid = stack.meeting("killed")
        assert mid["chunks_transcribed"] < 12, "the kill came too late to interrupt anything"
        time.sleep(0.5)
        stack.start_worker("processing")
        stack.start_worker("concat")
        assert stack.post("/v1/meetings/killed/end").status_code == 200
        events = stack.read_events(ws, completed)
    assert_recording_exact(stack, "killed", chunks)
    assert_transcribed_once(stack, "killed", 12, events)
    assert_recording_events_monotonic(events, 11)
