"""A transport that sends what one turn of the event loop writes to a connection in one send.

uvicorn writes a response's head when the app sends ``http.response.start`` and its body when the app
sends ``http.response.body``: two ``send`` system calls, and on a TCP connection two segments for the
client to wake up for, for every small answer (an ingest's 201 is about 300 bytes). Both are written in
the same turn of the loop (uvicorn's ``send`` does not wait unless the connection's buffer is full), so
here writes are collected and passed on together at the end of that turn: one system call, one segment.
Measured with wrk at 64 senders (bench/RESULTS.md): the client's CPU per answer fell by about a quarter
and py-spy's share of the gateway's samples in uvicorn's ``send`` from 13.8 to 8.2 %.

Everything but writing is the wrapped transport's own: reading, flow control (``pause_writing`` still
comes from the real buffer, one turn later at most), addresses. ``close`` and ``write_eof`` first send
what is collected; ``abort`` drops it, as the real transport drops its own buffer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any


class CoalescingTransport:
    """Wraps ``transport``; hand it to the protocol in place of the real one."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._collected: list[bytes | bytearray | memoryview] = []

    @property
    def wrapped(self) -> asyncio.Transport:
        """The real transport, once what is collected has been passed on to it."""
        self.flush()
        return self._transport

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._collected:
            self._loop.call_soon(self.flush)
        self._collected.append(data)

    def writelines(self, lines: Iterable[bytes | bytearray | memoryview]) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        collected, self._collected = self._collected, []
        if not collected or self._transport.is_closing():  # nobody left to read it
            return
        self._transport.write(collected[0] if len(collected) == 1 else b"".join(collected))

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(len(data) for data in self._collected)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._collected = []
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:  # reading, flow control, addresses: the real transport's
        return getattr(self._transport, name)
