"""Per-meeting events over WebSocket: isolation between meetings and lossless resume with ``since``."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from audioflow.workers.simulate import cut_chunks, load_speech
from tests.integration.checks import completed
from tests.integration.stack import Stack


def drain(ws: Any, idle: float = 1.5) -> list[dict[str, Any]]:
    """Every event until none arrives for ``idle`` seconds."""
    got: list[dict[str, Any]] = []
    with contextlib.suppress(TimeoutError):
        while True:
            got.append(json.loads(ws.recv(timeout=idle)))
    return got


def test_two_meetings_events_never_cross(stack: Stack) -> None:
    fmt, pcm = load_speech()
    chunks = cut_chunks(fmt, pcm, 1.0, 10)
    for meeting_id in ("alpha", "beta"):
        assert stack.post("/v1/meetings", json={"id": meeting_id}).status_code == 201
    with stack.events("alpha") as ws_a, stack.events("beta") as ws_b:
        for seq in range(6):  # interleaved: alpha gets 6 chunks, beta 4
            assert stack.send("alpha", seq, chunks[seq]) == 201
            if seq < 4:
                assert stack.send("beta", seq, chunks[seq]) == 201
        for meeting_id in ("alpha", "beta"):
            assert stack.post(f"/v1/meetings/{meeting_id}/end").status_code == 200
        alpha = stack.read_events(ws_a, completed)
        beta = stack.read_events(ws_b, completed)
    assert {e["meeting_id"] for e in alpha} == {"alpha"}
    assert {e["meeting_id"] for e in beta} == {"beta"}
    assert sorted(e["data"]["seq"] for e in alpha if e["type"] == "chunk.received") == list(range(6))
    assert sorted(e["data"]["seq"] for e in beta if e["type"] == "chunk.received") == list(range(4))
    # (A set: the last chunk may be announced again with the words after its cut, see processing.handle.)
    assert sorted({e["data"]["seq"] for e in alpha if e["type"] == "chunk.transcribed"}) == list(range(6))
    assert sorted({e["data"]["seq"] for e in beta if e["type"] == "chunk.transcribed"}) == list(range(4))
    # The same ids never appear in both: each meeting's stream is its own.
    assert not {e["id"] for e in alpha} & {e["id"] for e in beta}


def test_reconnect_with_since_gets_exactly_what_was_missed(stack: Stack) -> None:
    fmt, pcm = load_speech()
    chunks = cut_chunks(fmt, pcm, 1.0, 8)
    assert stack.post("/v1/meetings", json={"id": "resume"}).status_code == 201
    with stack.events("resume") as ws:
        for seq in range(3):
            assert stack.send("resume", seq, chunks[seq]) == 201
        seen = stack.read_events(ws, lambda got: sum(e["type"] == "chunk.received" for e in got) == 3)
    # Disconnected: the meeting goes on without this client.
    for seq in range(3, 8):
        assert stack.send("resume", seq, chunks[seq]) == 201
    assert stack.post("/v1/meetings/resume/end").status_code == 200
    stack.wait_completed("resume")
    with stack.events("resume", since=seen[-1]["id"]) as ws:
        resumed = drain(ws)
    with stack.events("resume") as ws:
        everything = drain(ws)
    assert everything[: len(seen)] == seen
    assert resumed == everything[len(seen) :]
    assert completed(resumed)
    ids = [e["id"] for e in everything]
    assert len(ids) == len(set(ids)) and ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))
