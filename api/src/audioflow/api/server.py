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
import contextlib
import gc
import logging
import os
import resource
import signal
import socket
from typing import cast

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from audioflow.api.app import create_app
from audioflow.api.write_coalescing import CoalescingTransport
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
            # A response's head and body leave in one send (write_coalescing.py).
            super().connection_made(cast(asyncio.Transport, CoalescingTransport(transport, self.loop)))
            if len(self.connections) > max_connections:
                oldest = next(iter(waiting), None)
                if oldest is None:  # every connection is in a request: no room for this one
                    transport.abort()
                    return
                oldest._head_done()
                oldest.transport.abort()
            self._await_head()

        def handle_websocket_upgrade(self) -> None:
            # The WebSocket protocol takes the real transport: its frames go out as they are written.
            self.transport = cast(CoalescingTransport, self.transport).wrapped
            super().handle_websocket_upgrade()

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


def serve(settings: Settings, host: str, port: int, workers: int = 1) -> None:
    """Serve on ``host:port``; with ``workers`` > 1, that many forked processes (each with its own app,
    pools and connection cap) listen on the port, each on a socket of its own (``SO_REUSEPORT``).

    Not one socket inherited by all: on a shared socket every process wakes for each new connection and
    whichever is idlest takes it, so a burst of connections went nearly all to one process (62 of 64,
    measured) and the others idled. The kernel spreads connections across ``SO_REUSEPORT`` sockets by
    their addresses instead."""
    max_connections = _raise_file_limit(settings.max_connections)
    if workers <= 1:
        _server(settings, max_connections, host, port).run()
        return
    if settings.metrics_port:
        raise SystemExit(
            "AUDIOFLOW_METRICS_PORT is one port for one process: with more than one gateway process "
            "(AUDIOFLOW_API_WORKERS, --workers), leave it unset or run one process per pod"
        )
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # Bound, never listening: the port is taken (a clash fails here, once) and no connection waits on it.
    holder = _reuse_port_socket(host, port, family)
    children: list[int] = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:  # the child: nothing but serving, then leave without the parent's cleanup
            code = 1
            try:
                holder.close()
                listener = _reuse_port_socket(host, port, family)
                listener.listen(2048)
                _server(settings, max_connections, host, port).run(sockets=[listener])
                code = 0
            except BaseException:
                log.exception("gateway process %d failed", os.getpid())
            finally:
                os._exit(code)
        children.append(pid)
    holder.close()
    log.info("gateway: %d processes on %s:%d", workers, host, port)
    _supervise(children)


def _reuse_port_socket(host: str, port: int, family: socket.AddressFamily) -> socket.socket:
    """A TCP socket bound to ``host:port`` with ``SO_REUSEPORT`` (otherwise as ``socket.create_server``
    makes it: address reuse, IPv6 only for an IPv6 host), not yet listening."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


# Python's cyclic collector by default runs every 700 net allocations; a gateway serving a few thousand
# requests a second then spends a few percent of its CPU collecting, and its oldest generation's passes
# (tens of ms over every module and route object) land in the slowest answers. Objects that live as
# long as the process are frozen out of collection once the app is built, and the youngest generation is
# collected every 10,000 allocations (bench/RESULTS.md: p99 at 64 senders 86-95 -> 52-62 ms).
GC_THRESHOLDS = (10_000, 20, 50)


def _server(settings: Settings, max_connections: int, host: str, port: int) -> uvicorn.Server:
    app = create_app(settings)
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    return uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            http=guarded_protocol(settings.header_timeout_s, max_connections),
            loop="uvloop",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=5,
        )
    )


def _supervise(children: list[int]) -> None:
    """Pass SIGTERM and SIGINT on to the children and wait for them. A child that exits while no stop was
    asked for stops the others and the parent exits 1, so whatever runs it restarts the whole gateway."""
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGTERM)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop)
    failed = False
    while children:
        pid, status = os.wait()
        if pid not in children:
            continue
        children.remove(pid)
        if not stopping:
            log.error("gateway process %d exited (status %d); stopping the others", pid, status)
            failed = True
            stop(signal.SIGTERM, None)
    if failed:
        raise SystemExit(1)
