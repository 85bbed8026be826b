"""Serving audio: the recording with Range requests, and live.wav following the recording's growth."""

from __future__ import annotations

import struct
import threading

from audioflow.core.wav import canonical_header, streaming_header
from audioflow.workers.simulate import cut_chunks, load_speech
from tests.integration.checks import pcm_of
from tests.integration.stack import Stack


def _send(stack: Stack, meeting_id: str, chunks: list[bytes], seqs: range) -> None:
    for seq in seqs:
        assert stack.send(meeting_id, seq, chunks[seq]) == 201


def _through(stack: Stack, meeting_id: str, seq: int) -> None:
    stack.wait_until(
        f"seq {seq} in the recording", lambda: stack.meeting(meeting_id)["concatenated_through"] >= seq
    )


def test_recording_answers_range_requests(stack: Stack) -> None:
    fmt, pcm = load_speech()
    chunks = cut_chunks(fmt, pcm, 1.0, 4)
    _send(stack, "ranges", chunks, range(4))
    _through(stack, "ranges", 3)
    body = canonical_header(fmt, sum(len(pcm_of(c)) for c in chunks)) + b"".join(pcm_of(c) for c in chunks)
    url = "/v1/meetings/ranges/recording.wav"

    whole = stack.get(url)
    assert whole.status_code == 200 and whole.content == body
    assert whole.headers["accept-ranges"] == "bytes" and whole.headers["content-length"] == str(len(body))

    first = stack.get(url, headers={"range": "bytes=0-0"})
    assert first.status_code == 206 and first.content == b"R"
    assert first.headers["content-range"] == f"bytes 0-0/{len(body)}"

    suffix = stack.get(url, headers={"range": "bytes=-100"})
    assert suffix.status_code == 206 and suffix.content == body[-100:]
    assert suffix.headers["content-range"] == f"bytes {len(body) - 100}-{len(body) - 1}/{len(body)}"

    middle = stack.get(url, headers={"range": "bytes=40-47"})
    assert middle.status_code == 206 and struct.unpack("<I", middle.content[:4])[0] == len(body) - 44

    past = stack.get(url, headers={"range": f"bytes={len(body)}-"})
    assert past.status_code == 416
    assert past.headers["content-range"] == f"bytes */{len(body)}"
    assert past.json()["error"]["code"] == "range_not_satisfiable"

    token_in_query = stack.client.get(f"{url}?token={stack.token}", headers={"range": "bytes=0-3"})
    assert token_in_query.status_code == 206 and token_in_query.content == b"RIFF"

    # Positions of 5,000 digits (past int()'s limit, once a 500): to the end, or not satisfiable.
    to_the_end = stack.get(url, headers={"range": "bytes=0-" + "9" * 5000})
    assert to_the_end.status_code == 206 and to_the_end.content == body
    beyond = stack.get(url, headers={"range": "bytes=" + "9" * 5000 + "-"})
    assert beyond.status_code == 416 and beyond.json()["error"]["code"] == "range_not_satisfiable"


def test_live_wav_delivers_bytes_appended_after_the_request_started(stack: Stack) -> None:
    fmt, pcm = load_speech()
    chunks = cut_chunks(fmt, pcm, 1.0, 6)
    _send(stack, "live", chunks, range(3))
    _through(stack, "live", 2)
    later = b"".join(pcm_of(c) for c in chunks[3:])
    received = bytearray()
    with stack.client.stream("GET", f"/v1/meetings/live/live.wav?token={stack.token}") as response:
        assert response.status_code == 200
        assert "content-length" not in response.headers
        sender = threading.Thread(target=_send, args=(stack, "live", chunks, range(3, 6)))
        sender.start()
        for piece in response.iter_bytes():
            received += piece
            if len(received) >= 44 + len(later):
                break
        sender.join()
    assert bytes(received[:44]) == streaming_header(fmt)
    assert bytes(received[44:]) == later


def test_live_wav_from_start_ends_when_the_meeting_completes(stack: Stack) -> None:
    fmt, pcm = load_speech()
    chunks = cut_chunks(fmt, pcm, 1.0, 3)
    _send(stack, "whole", chunks, range(3))
    _through(stack, "whole", 2)
    assert stack.post("/v1/meetings/whole/end").status_code == 200
    response = stack.client.get(f"/v1/meetings/whole/live.wav?from=start&token={stack.token}", timeout=60)
    assert response.status_code == 200
    assert response.content == streaming_header(fmt) + b"".join(pcm_of(c) for c in chunks)
