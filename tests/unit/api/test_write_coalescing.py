"""What one turn of the event loop writes to a connection leaves in one send (api/write_coalescing.py).

``RecordingTransport`` is a test double for the socket's transport: it records each write the wrapper
passes on. The protocol test runs uvicorn's real HTTP protocol (the gateway's guarded subclass) and a
real ASGI response over it.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
import uvicorn
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send
from uvicorn.server import ServerState

from audioflow.api.server import guarded_protocol
from audioflow.api.write_coalescing import CoalescingTransport

pytestmark = pytest.mark.asyncio


class RecordingTransport:
    """Test double: a transport that keeps what is written to it."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closed = False
        self.aborted = False
        self.reading_paused = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.sent.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def write_eof(self) -> None:
        self.sent.append(b"<eof>")

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        self.reading_paused = True

    def resume_reading(self) -> None:
        self.reading_paused = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000)}.get(name, default)


def _wrapped(loop: asyncio.AbstractEventLoop) -> tuple[CoalescingTransport, RecordingTransport]:
    real = RecordingTransport()
    return CoalescingTransport(cast(asyncio.Transport, real), loop), real


async def _next_turn() -> None:
    await asyncio.sleep(0)


async def test_writes_of_one_turn_leave_together_at_its_end() -> None:
    transport, real = _wrapped(asyncio.get_running_loop())
    transport.write(b"head ")
    transport.writelines([b"body", b"", b" tail"])
    assert real.sent == []
    assert transport.get_write_buffer_size() == len(b"head body tail")
    await _next_turn()
    assert real.sent == [b"head body tail"]
    transport.write(b"next")
    await _next_turn()
    assert real.sent == [b"head body tail", b"next"]


async def test_close_and_eof_send_what_is_collected_first() -> None:
    transport, real = _wrapped(asyncio.get_running_loop())
    transport.write(b"answer")
    transport.write_eof()
    transport.write(b"last")
    transport.close()
    assert real.sent == [b"answer", b"<eof>", b"last"]
    assert real.closed
    await _next_turn()  # the flush scheduled by the first write finds nothing left
    assert real.sent == [b"answer", b"<eof>", b"last"]


async def test_abort_drops_what_is_collected() -> None:
    transport, real = _wrapped(asyncio.get_running_loop())
    transport.write(b"never sent")
    transport.abort()
    await _next_turn()
    assert real.aborted
    assert real.sent == []


async def test_nothing_is_written_to_a_closing_connection() -> None:
    transport, real = _wrapped(asyncio.get_running_loop())
    transport.write(b"too late")
    real.closed = True  # the peer went away meanwhile
    await _next_turn()
    assert real.sent == []


async def test_the_rest_is_the_real_transports_own() -> None:
    transport, real = _wrapped(asyncio.get_running_loop())
    transport.pause_reading()
    assert real.reading_paused
    assert transport.get_extra_info("peername") == ("127.0.0.1", 50000)
    transport.write(b"collected")
    assert transport.wrapped is cast(
        asyncio.Transport, real
    )  # handing over the real transport sends what is collected first
    assert real.sent == [b"collected"]


async def _hello(scope: Scope, receive: Receive, send: Send) -> None:
    await PlainTextResponse("hello")(scope, receive, send)


async def test_a_response_head_and_body_leave_the_gateway_protocol_in_one_write() -> None:
    loop = asyncio.get_running_loop()
    config = uvicorn.Config(_hello, log_config=None, access_log=False, lifespan="off")
    config.load()
    protocol_class = guarded_protocol(header_timeout_s=5.0, max_connections=10)
    protocol = protocol_class(config=config, server_state=ServerState(), app_state={}, _loop=loop)
    real = RecordingTransport()
    protocol.connection_made(cast(asyncio.Transport, real))
    for _ in range(2):  # keep-alive: each answer of the connection is one write
        protocol.data_received(b"GET / HTTP/1.1\r\nhost: test\r\n\r\n")
        for _ in range(20):
            await _next_turn()
    assert len(real.sent) == 2
    for sent in real.sent:
        head, _, body = sent.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK")
        assert body == b"hello"
    protocol.connection_lost(None)
