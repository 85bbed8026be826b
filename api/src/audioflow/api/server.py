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
import threading
from collections.abc import Callable
from typing import cast

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from audioflow.api.app import create_app
from audioflow.api.connection_handoff import Channels, HandOut, Intake, Loads
from audioflow.api.write_coalescing import CoalescingTransport
from audioflow.core.settings import Settings

log = logging.getLogger("audioflow.api.server")

_FDS_BESIDES_CONNECTIONS = 256  # database, Redis, recordings, spooled bodies, the listening socket
_HEAD_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 33\r\nconnection: close\r\n\r\nthe request head did not arrive\n"
)


def guarded_protocol(
    header_timeout_s: float, max_connections: int, on_closed: Callable[[int], None] | None = None
) -> type[HttpToolsProtocol]:
    """An HTTP/1.1 protocol class with the head deadline and the connection cap; one per server.
    ``on_closed`` is told how many connections are left open after each one closes."""
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
            if on_closed is not None:
                on_closed(len(self.connections))

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
    pools and connection cap) serve the connections the parent accepts on the port and hands to whichever
    holds the fewest (``connection_handoff.py``: why not each process accepting for itself)."""
    max_connections = _raise_file_limit(settings.max_connections)
    if workers <= 1:
        _server(settings, max_connections, host, port).run()
        return
    if settings.metrics_port:
        raise SystemExit(
            "AUDIOFLOW_METRICS_PORT is one port for one process: with more than one gateway process "
            "(AUDIOFLOW_API_WORKERS, --workers), leave it unset or run one process per pod"
        )
    # As uvicorn makes one (address reuse; IPv6 only for an IPv6 host). A clash fails here, once.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.create_server((host, port), family=family, backlog=2048)
    channels, loads = Channels(workers), Loads(workers)
    children: list[int] = []
    for index in range(workers):
        pid = os.fork()
        if pid == 0:  # the child: nothing but serving, then leave without the parent's cleanup
            code = 1
            try:
                listener.close()
                intake = Intake(channels.keep_for_process(index), loads, index)
                _server(settings, max_connections, host, port, intake).run(sockets=[])
                code = 0
            except BaseException:
                log.exception("gateway process %d failed", os.getpid())
            finally:
                os._exit(code)
        children.append(pid)
    # Only once every child is forked: a thread running in the parent would be half-copied into them.
    hand_out = HandOut(listener, channels.keep_for_parent(), loads)
    threading.Thread(target=hand_out.run, name="hand-out", daemon=True).start()
    log.info("gateway: %d processes on %s:%d", workers, host, port)
    try:
        _supervise(children, stop_accepting=hand_out.stop)
    finally:
        listener.close()


class _HandedServer(uvicorn.Server):
    """A uvicorn server listening on nothing: its connections come from the parent (``Intake``)."""

    def __init__(self, config: uvicorn.Config, intake: Intake) -> None:
        super().__init__(config)
        self._intake = intake

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])
        self._intake.start(asyncio.get_running_loop(), self)

    def new_protocol(self) -> asyncio.Protocol:
        # As uvicorn's own startup makes each connection's protocol.
        return self.config.http_protocol_class(  # type: ignore[call-arg]
            config=self.config, server_state=self.server_state, app_state=self.lifespan.state
        )

    def open_connections(self) -> int:
        return len(self.server_state.connections)

    def parent_gone(self) -> None:
        log.error("gateway process %d: the parent process is gone; stopping", os.getpid())
        self.should_exit = True

    async def on_tick(self, counter: int) -> bool:
        # An HTTP connection leaves the count as it closes (guarded_protocol's on_closed); one upgraded to a
        # WebSocket is no longer the guarded protocol's, and leaves it here, within a tick (0.1 s).
        self._intake.report(self.open_connections())
        return await super().on_tick(counter)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._intake.stop(asyncio.get_running_loop())
        await super().shutdown(sockets)


# Python's cyclic collector by default runs every 700 net allocations; a gateway serving a few thousand
# requests a second then spends a few percent of its CPU collecting, and its oldest generation's passes
# (tens of ms over every module and route object) land in the slowest answers. Objects that live as
# long as the process are frozen out of collection once the app is built, and the youngest generation is
# collected every 10,000 allocations (bench/RESULTS.md: p99 at 64 senders 86-95 -> 52-62 ms).
GC_THRESHOLDS = (10_000, 20, 50)


def _server(
    settings: Settings, max_connections: int, host: str, port: int, intake: Intake | None = None
) -> uvicorn.Server:
    app = create_app(settings)
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=guarded_protocol(
            settings.header_timeout_s, max_connections, on_closed=None if intake is None else intake.report
        ),
        loop="uvloop",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    return uvicorn.Server(config) if intake is None else _HandedServer(config, intake)


def _supervise(children: list[int], stop_accepting: Callable[[], None]) -> None:
    """Pass SIGTERM and SIGINT on to the children and wait for them. A child that exits while no stop was
    asked for stops the others and the parent exits 1, so whatever runs it restarts the whole gateway."""
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        if not stopping:
            stop_accepting()
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
