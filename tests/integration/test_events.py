"""Per-meeting events over WebSocket: isolation between meetings and lossless resume with ``since``."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any

import redis

from audioflow.core import announcements, events
from audioflow.core.db import queries
from audioflow.core.db.engine import make_engine, make_sessionmaker, transaction
from audioflow.core.keys import Keys
from audioflow.workers.simulate import cut_chunks, load_speech
from tests.integration.checks import completed
from tests.integration.stack import Stack
from tests.rows import settle


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


def test_the_end_route_holds_completed_back_until_the_workers_events_are_out(
    make: Callable[..., Stack], database_url: str, redis_server_url: str, redis_prefix: str
) -> None:
    """A worker's commit and its event are two steps. Here the rows say chunk 0 is transcribed and
    recorded, but neither event is out (a worker between the two): ending the meeting answers
    ``completed`` from the rows and does not announce it; once the events are out, it does."""
    stack = make()
    stack.start_api()  # no workers: the test plays their part
    fmt, pcm = load_speech()
    assert stack.send("held", 0, cut_chunks(fmt, pcm, 1.0, 1)[0]) == 201
    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    with transaction(sessions) as session:
        generation = queries.generation(queries.get_meeting(session, "held"))
        settle(session, "held", [0], with_chunks=False)  # the gateway stored the chunk
    engine.dispose()
    client = redis.Redis.from_url(redis_server_url, decode_responses=True)
    keys = Keys(redis_prefix)

    def phases() -> list[str]:
        entries: Any = client.xrange(keys.events("held"))
        return [json.loads(f["data"])["phase"] for _, f in entries if f["type"] == "meeting.phase"]

    ended = stack.post("/v1/meetings/held/end")
    assert ended.status_code == 200 and ended.json()["phase"] == "completed"
    assert phases() == ["live"]  # held back
    outstanding: list[tuple[events.EventType, str, str]] = [
        ("chunk.transcribed", announcements.transcribed(0), announcements.WITH_TAIL),
        ("recording.extended", announcements.RECORDING, "0"),
    ]
    for type_, mark, value in outstanding:
        events.publish_marked(
            client,
            keys,
            "held",
            type_,
            {},
            mark=mark,
            value=value,
            once=True,
            generation=generation,
            maxlen=100,
        )
    assert stack.post("/v1/meetings/held/end").status_code == 200  # idempotent: says it now
    assert phases() == ["live", "completed"]
    client.close()
