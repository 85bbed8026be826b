"""Serving the gateway: uvicorn with a request-head deadline and a connection cap.

uvicorn has neither. A client that trickles its request head a byte at a time holds a connection (and a
file descriptor) for as long as it likes, so about a thousand of them made every request fail, health
checks included. Here every connection must complete its request head within
``AUDIOFLOW_HEADER_TIMEOUT_S`` of opening (or of its previous answer), else it gets ``408`` and is
closed; and at most ``AUDIOFLOW_MAX_CONNECTIONS`` are open: a new connection beyond that displaces the
connection that has waited longest for its head (an honest client sends its head at once), or is closed
when every connection is busy with a request.
"""

from __future__ import annotations

import asyncio
import logging
import resource

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from audioflow.api.app import create_app
from audioflow.core.settings import Settings

log = logging.getLogger("audioflow.api.server")

_FDS_BESIDES_CONNECTIONS = 256  # database, Redis, recordings, spooled bodies, the listening socket
_HEAD_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 33\r\nconnection: close\r\n\r\nthe request head did not arrive\n"
)


def guarded_protocol(header_timeout_s: float, max_connections: int) -> type[HttpToolsProtocol]:
    """An HTTP/1.1 protocol class with the head deadline and the connection cap; one per server."""
    # Connections waiting for a request head, oldest first (dicts keep insertion order).
    waiting: dict[GuardedProtocol, asyncio.TimerHandle] = {}

    class GuardedProtocol(HttpToolsProtocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                oldest = next(iter(waiting), None)
                if oldest is None:  # every connection is in a request: no room for this one
                    transport.abort()
                    return
                oldest._head_done()
                oldest.transport.abort()
            self._await_head()

        def connection_lost(self, exc: Exception | None) -> None:
            self._head_done()
            super().connection_lost(exc)

        def on_headers_complete(self) -> None:
            self._head_done()
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._await_head()  # a keep-alive connection's next head has the same deadline

        def _await_head(self) -> None:
            self._head_done()
            waiting[self] = self.loop.call_later(header_timeout_s, self._head_timed_out)

        def _head_done(self) -> None:
            timer = waiting.pop(self, None)
            if timer is not None:
                timer.cancel()

        def _head_timed_out(self) -> None:
            waiting.pop(self, None)
            if not self.transport.is_closing():
                self.transport.write(_HEAD_TIMEOUT)
                self.transport.close()

    return GuardedProtocol


def _raise_file_limit(max_connections: int) -> int:
    """Room for ``max_connections`` sockets besides the process's other files: the soft limit is raised
    up to the hard one if needed; returns the number of connections that fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections + _FDS_BESIDES_CONNECTIONS
    if soft != resource.RLIM_INFINITY and soft < wanted:
        soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    if soft != resource.RLIM_INFINITY and soft < wanted:
        fitting = max(8, soft - _FDS_BESIDES_CONNECTIONS)
        log.warning(
            "the open-file limit (%d) leaves room for %d connections, not AUDIOFLOW_MAX_CONNECTIONS=%d",
            soft,
            fitting,
            max_connections,
        )
        return fitting
    return max_connections


def serve(settings: Settings, host: str, port: int) -> None:
    max_connections = _raise_file_limit(settings.max_connections)
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        http=guarded_protocol(settings.header_timeout_s, max_connections),
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
    )
