"""Event WebSocket followers at scale, on a real gateway on 127.0.0.1 (issue 13, row 3): followers share
one Redis reader per meeting, are bounded with a clear close code, and never starve request traffic; a
meeting write that committed never answers 5xx. SQLite only: the database is not what is loaded."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from audioflow.api.routes.events import REPLAYS_AT_ONCE
from audioflow.workers.simulate import cut_chunks, load_speech
from tests.integration.stack import Stack
from tests.services import free_port

FOLLOWERS = 150  # past the 100 connections of a redis-py pool, which one connection per follower exhausted


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'audioflow.db'}"


def _follow(stack: Stack, meeting_id: str) -> Any:
    return connect(
        f"ws://127.0.0.1:{stack.port}/v1/meetings/{meeting_id}/events?token={stack.token}", open_timeout=10
    )


def _next_event(ws: Any, timeout: float = 15.0) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(ws.recv(timeout=timeout))
    return event


def _refusal(ws: Any) -> tuple[int, str, str]:
    """The error message and close frame of a refused follower."""
    error = json.loads(ws.recv(timeout=10))["error"]["code"]
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=10)
    assert closed.value.rcvd is not None, "closed without a close frame"
    return closed.value.rcvd.code, closed.value.rcvd.reason, error


def _follower_connections(redis_url: str, prefix: str) -> int:
    client = redis.Redis.from_url(redis_url)
    try:
        return sum(1 for c in client.client_list() if c.get("name") == f"{prefix}events")
    finally:
        client.close()


def test_many_followers_of_one_meeting_share_one_reader_and_requests_stay_served(
    make: Callable[..., Stack], redis_server_url: str
) -> None:
    """100 followers used to take all 100 connections of the gateway's Redis pool: the 101st was closed
    with 1011, /readyz went 503 and POST /v1/meetings answered 503 after committing."""
    stack = make()
    stack.start_api()
    assert stack.post("/v1/meetings", json={"id": "crowd"}).status_code == 201
    fmt, pcm = load_speech()
    chunk = cut_chunks(fmt, pcm, 1.0, 1)[0]
    with contextlib.ExitStack() as open_sockets:
        followers = [open_sockets.enter_context(_follow(stack, "crowd")) for _ in range(FOLLOWERS)]
        # Each one replays the meeting's creation first: it is following, not refused.
        for ws in followers:
            assert _next_event(ws)["data"] == {"phase": "pending"}
        ready = stack.client.get("/readyz")
        assert ready.status_code == 200, ready.text
        created = stack.post("/v1/meetings", json={"id": "meanwhile"})
        assert created.status_code == 201, created.text
        assert stack.send("crowd", 0, chunk) == 201
        for ws in followers:
            received = [_next_event(ws) for _ in range(2)]
            assert [e["type"] for e in received] == ["meeting.phase", "chunk.received"], received
        prefix = stack.env["AUDIOFLOW_REDIS_PREFIX"]
        assert _follower_connections(redis_server_url, prefix) <= 1 + REPLAYS_AT_ONCE
    assert "Traceback" not in stack.logs()


def test_followers_past_the_limits_are_refused_with_4429(make: Callable[..., Stack]) -> None:
    stack = make(AUDIOFLOW_MAX_EVENT_FOLLOWERS="4", AUDIOFLOW_MAX_EVENT_FOLLOWERS_PER_MEETING="3")
    stack.start_api()
    for meeting_id in ("a", "b", "c"):
        assert stack.post("/v1/meetings", json={"id": meeting_id}).status_code == 201
    with contextlib.ExitStack() as open_sockets:
        on_a = [open_sockets.enter_context(_follow(stack, "a")) for _ in range(3)]
        for ws in on_a:
            assert _next_event(ws)["type"] == "meeting.phase"
        with _follow(stack, "a") as fourth_on_a:
            code, reason, error = _refusal(fourth_on_a)
        assert (code, reason, error) == (4429, "too_many_followers", "too_many_followers")
        on_b = open_sockets.enter_context(_follow(stack, "b"))
        assert _next_event(on_b)["type"] == "meeting.phase"
        with _follow(stack, "c") as fifth:  # the gateway's limit, on a meeting with none
            assert _refusal(fifth)[0] == 4429
        on_a.pop().close()  # a follower that leaves frees its place
        stack.wait_until("a freed place", lambda: _admitted(stack, "c"), timeout=10)


def _admitted(stack: Stack, meeting_id: str) -> bool:
    with _follow(stack, meeting_id) as ws:
        return "type" in _next_event(ws)  # else {"error": ...}: refused


def test_a_committed_meeting_write_never_answers_5xx(make: Callable[..., Stack]) -> None:
    """Redis unreachable: creating and ending a meeting commit in the database and then fail to announce
    the phase. That used to answer 503, and the producer's retry then got 409 for the meeting it had made."""
    stack = make(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    stack.start_api()
    created = stack.post("/v1/meetings", json={"id": "committed"})
    assert created.status_code == 201, created.text
    assert created.json()["phase"] == "pending"
    ended = stack.post("/v1/meetings/committed/end")
    assert ended.status_code == 200, ended.text
    assert stack.get("/v1/meetings/committed").json()["id"] == "committed"
    # What did not commit still says so: deletion starts in Redis and is refused before touching rows.
    deleted = stack.delete("/v1/meetings/committed")
    assert deleted.status_code == 503 and deleted.headers["retry-after"]
    assert stack.get("/v1/meetings/committed").status_code == 200
