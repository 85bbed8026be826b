"""The parent's hand-out of connections and a gateway process's intake, on real sockets (the server they
serve is a test double: ``RecordingServer``)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from audioflow.api.connection_handoff import HandOut, Intake, Loads


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.create_server(("127.0.0.1", 0))
    yield sock
    sock.close()


def _pair() -> tuple[socket.socket, socket.socket]:
    """A parent's and a process's end, as ``Channels`` makes them."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def _received(channel: socket.socket) -> int:
    """How many connections were passed into ``channel`` (closing them)."""
    channel.setblocking(False)
    count = 0
    while True:
        try:
            _, fds, _, _ = socket.recv_fds(channel, 1, 8)
        except BlockingIOError:
            return count
        for fd in fds:
            socket.socket(fileno=fd).close()
            count += 1


def test_each_connection_goes_to_the_process_with_the_lowest_load(listener: socket.socket) -> None:
    pairs, loads = [_pair() for _ in range(2)], Loads(2)
    process_ends = [process_end for _, process_end in pairs]  # read here, as the processes would
    loads.report(0, taken=0, open_now=5)  # process 0 already holds 5 connections
    hand_out = HandOut(listener, [parent_end for parent_end, _ in pairs], loads)
    handing_out = threading.Thread(target=hand_out.run)
    handing_out.start()
    clients = [socket.create_connection(listener.getsockname()) for _ in range(7)]
    try:
        # Process 1 takes connections until it holds as many (5), then ties go to the first process.
        for _ in range(500):
            if hand_out.passed == 7:
                break
            time.sleep(0.02)
        counts = [_received(end) for end in process_ends]
        assert counts == [1, 6]
    finally:
        hand_out.stop()
        handing_out.join(5)
        for sock in [*clients, *(end for pair in pairs for end in pair)]:
            sock.close()
    assert not handing_out.is_alive()  # stop() ends it


def test_a_process_whose_queue_is_full_does_not_hold_up_the_others(listener: socket.socket) -> None:
    pairs, loads = [_pair() for _ in range(2)], Loads(2)
    # A small send buffer: process 0's queue fills after a few connections (by default, a few hundred).
    pairs[0][0].setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    loads.report(1, taken=0, open_now=10_000)  # process 1 looks busy: everything goes to 0 while it can
    hand_out = HandOut(listener, [parent_end for parent_end, _ in pairs], loads)
    handing_out = threading.Thread(target=hand_out.run)
    handing_out.start()
    clients = [socket.create_connection(listener.getsockname()) for _ in range(40)]
    try:
        # Process 0 reads nothing until the hand-out is done: once its queue is full, the rest go to 1.
        to_1 = 0
        for _ in range(500):
            to_1 += _received(pairs[1][1])
            if hand_out.passed == 40:
                break
            time.sleep(0.02)
        to_1 += _received(pairs[1][1])
        to_0 = _received(pairs[0][1])
        assert to_0 + to_1 == 40 and to_0 > 0 and to_1 > 0, (to_0, to_1)
    finally:
        hand_out.stop()
        handing_out.join(5)
        for sock in [*clients, *(end for pair in pairs for end in pair)]:
            sock.close()


class RecordingServer:
    """Test double of the gateway process's server: records the connections it is given."""

    def __init__(self) -> None:
        self.made: list[asyncio.Transport] = []
        self.gone = asyncio.Event()

    def new_protocol(self) -> asyncio.Protocol:
        server = self

        class Recording(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                server.made.append(transport)  # type: ignore[arg-type]

        return Recording()

    def open_connections(self) -> int:
        return len(self.made)

    def parent_gone(self) -> None:
        self.gone.set()


def test_the_intake_sets_up_what_it_is_passed_reports_it_and_sees_the_parent_go() -> None:
    (parent_end, process_end), loads = _pair(), Loads(1)
    intake = Intake(process_end, loads, 0)
    server = RecordingServer()

    async def run() -> None:
        intake.start(asyncio.get_running_loop(), server)
        with socket.create_server(("127.0.0.1", 0)) as listening:
            clients = [socket.create_connection(listening.getsockname()) for _ in range(3)]
            for _ in clients:
                conn, _ = listening.accept()
                with conn:
                    socket.send_fds(parent_end, [b"c"], [conn.fileno()])
            for _ in range(100):
                if len(server.made) == 3:
                    break
                await asyncio.sleep(0.01)
            assert len(server.made) == 3
            assert loads.read(0) == (3, 3)  # taken in 3, all 3 open
            parent_end.close()  # the parent is gone
            await asyncio.wait_for(server.gone.wait(), 5)
            for transport in server.made:
                transport.close()
            for client in clients:
                client.close()

    try:
        asyncio.run(run())
    finally:
        process_end.close()
