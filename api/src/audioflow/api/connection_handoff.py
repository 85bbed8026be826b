"""One listening socket; the parent hands each connection to the gateway process holding the fewest.

Every process accepting for itself shares connections out badly. On one shared socket every process
woke for each new connection and whichever was idlest took it: a burst went nearly all to one process
(62 of 64, measured). On a socket each (``SO_REUSEPORT``) the kernel picks by a hash of the addresses,
so one process holds more of a set of long-lived keep-alive connections (36 and 28 of 64, measured),
and its queue sets the whole gateway's tail latency. Here the parent accepts and passes each connection
(``SCM_RIGHTS`` over a Unix socket pair) to the process whose load is lowest: the connections it last
reported open, plus those passed to it that it has not yet taken in.

When the parent goes (even by ``kill -9``), each process's end of its pair reads end-of-file and the
process shuts down: no gateway process serves on, unreachable, without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mmap
import select
import socket
import struct
import threading
from typing import Protocol

log = logging.getLogger("audioflow.api.connection_handoff")

# Per process: connections taken in so far, connections open now. Written by that process only.
_SLOT = struct.Struct("=qq")
_MAX_FDS_PER_READ = 64


class Loads:
    """Each process's counts, in memory shared by the parent and the processes it forks (made before)."""

    def __init__(self, processes: int) -> None:
        self._memory = mmap.mmap(-1, _SLOT.size * processes)

    def report(self, index: int, taken: int, open_now: int) -> None:
        _SLOT.pack_into(self._memory, index * _SLOT.size, taken, open_now)

    def read(self, index: int) -> tuple[int, int]:
        taken, open_now = _SLOT.unpack_from(self._memory, index * _SLOT.size)
        return taken, open_now


class Channels:
    """A Unix socket pair per process: the parent writes connections into one end, the process reads them
    from the other. Made before the fork; each side then keeps only its own ends."""

    def __init__(self, processes: int) -> None:
        self._pairs = [socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET) for _ in range(processes)]

    def keep_for_process(self, index: int) -> socket.socket:
        for i, (parent_end, process_end) in enumerate(self._pairs):
            parent_end.close()
            if i != index:
                process_end.close()
        return self._pairs[index][1]

    def keep_for_parent(self) -> list[socket.socket]:
        for _, process_end in self._pairs:
            process_end.close()
        return [parent_end for parent_end, _ in self._pairs]


class HandOut:
    """The parent's side: accepts on ``listener`` and passes each connection to the least loaded process.
    :meth:`run` is a thread of the parent, which does nothing else but supervise; :meth:`stop` ends it."""

    def __init__(self, listener: socket.socket, channels: list[socket.socket], loads: Loads) -> None:
        self._listener = listener
        self._channels = channels
        self._loads = loads
        self._passed = [0] * len(channels)
        self._stopping = threading.Event()
        for channel in channels:  # a process whose queue is full must not hold up the others' connections
            channel.setblocking(False)

    def run(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError as exc:
                if self._stopping.is_set():
                    return
                # Out of file descriptors, say: the connection waits in the backlog meanwhile.
                log.warning("accepting a connection failed (%s); trying again", exc)
                self._stopping.wait(0.1)
                continue
            with conn:  # once passed, the process holds its own copy; the parent's closes here
                self._pass(conn)

    @property
    def passed(self) -> int:
        """Connections passed on so far."""
        return sum(self._passed)

    def stop(self) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):  # wakes run's accept() (closing the socket would not, on Linux)
            self._listener.shutdown(socket.SHUT_RDWR)

    def _load(self, index: int) -> int:
        taken, open_now = self._loads.read(index)
        return open_now + self._passed[index] - taken

    def _pass(self, conn: socket.socket) -> None:
        while not self._stopping.is_set():
            full = []
            for index in sorted(range(len(self._channels)), key=self._load):
                try:
                    socket.send_fds(self._channels[index], [b"c"], [conn.fileno()])
                except BlockingIOError:  # its queue is full (net.unix.max_dgram_qlen): the next one
                    full.append(self._channels[index])
                    continue
                except OSError:  # that process is gone: the supervisor stops the gateway
                    continue
                self._passed[index] += 1
                return
            if not full:
                return  # no process left to take it: it closes
            select.select([], full, [], 1.0)


class Server(Protocol):
    """What the intake needs of the gateway process's server."""

    def new_protocol(self) -> asyncio.Protocol: ...  # a new connection's, as the server makes them
    def open_connections(self) -> int: ...
    def parent_gone(self) -> None: ...


class Intake:
    """A gateway process's side: takes in the connections its parent passes and reports its load."""

    def __init__(self, channel: socket.socket, loads: Loads, index: int) -> None:
        self._channel = channel
        self._loads = loads
        self._index = index
        self._taken = 0
        self._setting_up = 0  # taken in, not yet among the server's connections

    def start(self, loop: asyncio.AbstractEventLoop, server: Server) -> None:
        self._loop, self._server = loop, server
        self._channel.setblocking(False)
        loop.add_reader(self._channel.fileno(), self._take_in)

    def stop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Take in no more (connections passed meanwhile close with this process)."""
        loop.remove_reader(self._channel.fileno())

    def report(self, open_now: int) -> None:
        """Publish the load: ``open_now`` (the server's connections) and those still being set up."""
        self._loads.report(self._index, self._taken, open_now + self._setting_up)

    def _take_in(self) -> None:
        while True:
            try:
                message, fds, _, _ = socket.recv_fds(self._channel, 1, _MAX_FDS_PER_READ)
            except BlockingIOError:
                break
            if not message and not fds:  # end of file: the parent is gone
                self.stop(self._loop)
                self._server.parent_gone()
                break
            for fd in fds:
                self._taken += 1
                self._setting_up += 1
                self._loop.create_task(self._connect(socket.socket(fileno=fd)))
        self.report(self._server.open_connections())

    async def _connect(self, conn: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(self._server.new_protocol, conn)
        except OSError as exc:  # the client left before the connection was set up
            log.debug("a passed connection could not be set up: %s", exc)
            with contextlib.suppress(OSError):
                conn.close()
        finally:
            self._setting_up -= 1
            self.report(self._server.open_connections())
