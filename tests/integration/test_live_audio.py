"""The live-audio WebSocket: PCM from the live edge or a byte offset, resumed without gap or repeat,
refusals with clear close codes (never a 500), a listener limit, and the end of a meeting."""

from __future__ import annotations

import contextlib
import json
import struct
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from audioflow.workers.simulate import cut_chunks, load_speech
from tests.integration.checks import pcm_of
from tests.integration.stack import Stack

HEADER = struct.Struct("<Q")


@contextlib.contextmanager
def listen(stack: Stack, meeting_id: str, query: str = "", token: str | None = None) -> Iterator[Any]:
    url = f"ws://127.0.0.1:{stack.port}/v1/meetings/{meeting_id}/live-audio?token={token or stack.token}"
    with connect(url + (f"&{query}" if query else ""), max_size=None) as ws:
        yield ws


def start_of(ws: Any) -> dict[str, Any]:
    first = json.loads(ws.recv(timeout=10))
    assert first["type"] == "start", first
    return dict(first)


def receive_pcm(ws: Any, start: int, size: int) -> bytes:
    """At least ``size`` bytes of PCM from offset ``start`` (whole messages); each message must continue
    where the last ended."""
    got = bytearray()
    while len(got) < size:
        message = ws.recv(timeout=30)
        assert isinstance(message, bytes), message
        (offset,) = HEADER.unpack_from(message)
        assert offset == start + len(got), f"a message at {offset}, expected {start + len(got)}"
        got += message[HEADER.size :]
    return bytes(got)


def refusal(stack: Stack, meeting_id: str, query: str = "", token: str | None = None) -> tuple[int, str]:
    """The close code and error code of a refused connection."""
    with listen(stack, meeting_id, query, token) as ws:
        body = json.loads(ws.recv(timeout=10))
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
        assert ws.close_code is not None
        return ws.close_code, str(body["error"]["code"])


def _send_through(stack: Stack, meeting_id: str, chunks: list[bytes], seqs: range) -> None:
    for seq in seqs:
        assert stack.send(meeting_id, seq, chunks[seq]) == 201
    stack.wait_until(
        f"seq {seqs[-1]} in the recording",
        lambda: stack.meeting(meeting_id)["concatenated_through"] >= seqs[-1],
    )


@pytest.fixture
def recorder(make: Callable[..., Stack]) -> Stack:
    """The gateway and a concat worker: recordings grow, nothing is transcribed."""
    running = make()
    running.start_api()
    running.start_worker("concat")
    return running


def test_live_audio_follows_the_edge_and_a_reconnect_resumes_without_gap_or_repeat(stack: Stack) -> None:
    fmt, speech = load_speech()
    chunks = cut_chunks(fmt, speech, 1.0, 7)
    pcm = b"".join(pcm_of(c) for c in chunks)
    second = len(pcm_of(chunks[0]))  # bytes per chunk (1 s)
    _send_through(stack, "edge", chunks, range(3))

    with listen(stack, "edge", "from=start") as ws:
        start = start_of(ws)
        assert start["format"] == {"sample_rate": fmt.sample_rate, "channels": fmt.channels, "bits": fmt.bits}
        assert start["offset"] == 0 and start["edge"] == 3 * second
        assert receive_pcm(ws, 0, 3 * second) == pcm[: 3 * second]

    with listen(stack, "edge", "from=live&back_ms=250") as ws:
        start = start_of(ws)
        assert start["edge"] == 3 * second and start["offset"] == 3 * second - second // 4
        assert receive_pcm(ws, start["offset"], second // 4) == pcm[start["offset"] : 3 * second]
        # Live: what is appended after the connection reaches it, and it can leave half way.
        _send_through(stack, "edge", chunks, range(3, 5))
        part = receive_pcm(ws, 3 * second, second // 2)
    resume = 3 * second + len(part)
    assert part == pcm[3 * second : resume] and resume < 5 * second

    # Reconnect from the end of what was received: the rest, exactly, then what comes later.
    with listen(stack, "edge", f"from={resume}") as ws:
        assert start_of(ws)["offset"] == resume
        _send_through(stack, "edge", chunks, range(5, 7))
        assert receive_pcm(ws, resume, len(pcm) - resume) == pcm[resume:]
        # The meeting ends: everything was sent, so the socket says so and closes normally.
        assert stack.post("/v1/meetings/edge/end").status_code == 200
        assert json.loads(ws.recv(timeout=120)) == {"type": "end", "reason": "completed"}
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
        assert ws.close_code == 1000

    # A meeting that is over: from the start, all of it, then the end at once.
    with listen(stack, "edge", "from=start") as ws:
        start_of(ws)
        assert receive_pcm(ws, 0, len(pcm)) == pcm
        assert json.loads(ws.recv(timeout=10)) == {"type": "end", "reason": "completed"}


def test_live_audio_refuses_bad_input_with_clear_close_codes(recorder: Stack) -> None:
    fmt, speech = load_speech()
    chunks = cut_chunks(fmt, speech, 1.0, 2)
    _send_through(recorder, "bad", chunks, range(2))
    edge = 2 * len(pcm_of(chunks[0]))
    assert recorder.post("/v1/meetings", json={"id": "silent"}).status_code == 201
    cases = [
        ("bad", "", "not-the-token", (4401, "invalid_token")),
        ("nobody", "", None, (4404, "meeting_not_found")),
        ("silent", "", None, (4404, "no_recording_yet")),
        ("..", "", None, (4400, "invalid_meeting_id")),
        ("bad", "from=soon", None, (4400, "invalid_from")),
        ("bad", "from=-2", None, (4400, "invalid_from")),
        ("bad", "from=" + "9" * 5000, None, (4400, "invalid_from")),
        ("bad", "from=3", None, (4400, "invalid_from")),  # not on a 2-byte frame boundary
        ("bad", f"from={edge + 2}", None, (4416, "offset_beyond_edge")),
        ("bad", "back_ms=later", None, (4400, "invalid_back_ms")),
        ("bad", "back_ms=60001", None, (4400, "invalid_back_ms")),
        ("bad", "from=start&back_ms=100", None, (4400, "invalid_back_ms")),
    ]
    for meeting_id, query, token, expected in cases:
        assert refusal(recorder, meeting_id, query, token) == expected, (meeting_id, query)
    # The edge itself is a valid place to start (a reconnect that had received everything).
    with listen(recorder, "bad", f"from={edge}") as ws:
        assert start_of(ws) == {
            "type": "start",
            "format": {"sample_rate": fmt.sample_rate, "channels": fmt.channels, "bits": fmt.bits},
            "offset": edge,
            "edge": edge,
        }
    assert "Traceback" not in recorder.logs()


def test_live_audio_limits_listeners_and_frees_a_place_when_one_leaves(make: Callable[..., Stack]) -> None:
    stack = make(AUDIOFLOW_LIVE_AUDIO_MAX_LISTENERS="2")
    stack.start_api()
    stack.start_worker("concat")
    fmt, speech = load_speech()
    chunks = cut_chunks(fmt, speech, 1.0, 1)
    _send_through(stack, "busy", chunks, range(1))
    with listen(stack, "busy") as first, listen(stack, "busy") as second:
        start_of(first)
        start_of(second)
        assert refusal(stack, "busy") == (4429, "too_many_listeners")
    with listen(stack, "busy") as third:  # the two left: room again
        assert start_of(third)["edge"] == len(pcm_of(chunks[0]))


def test_live_audio_of_a_deleted_meeting_closes_with_meeting_deleted(recorder: Stack) -> None:
    fmt, speech = load_speech()
    chunks = cut_chunks(fmt, speech, 1.0, 1)
    _send_through(recorder, "gone", chunks, range(1))
    with listen(recorder, "gone") as ws:
        start_of(ws)
        assert recorder.delete("/v1/meetings/gone").status_code in (
            200,
            202,
            204,
        )
        assert json.loads(ws.recv(timeout=30))["error"]["code"] == "meeting_deleted"
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
        assert ws.close_code == 4404
