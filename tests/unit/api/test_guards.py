"""The body guard: bodies past 1 MiB go to an unnamed file in the data folder and are read back mapped,
byte for byte; a full disk while receiving is StorageFull (507 with Retry-After); the upload slots bound
bodies being received."""

from __future__ import annotations

import asyncio
import errno
import io
import tempfile
from pathlib import Path

import pytest
from starlette.types import Message, Receive, Scope, Send

from audioflow.api.guards import SPOOL_IN_MEMORY, BodyGuard, Spool
from audioflow.core.errors import StorageFull


@pytest.mark.parametrize("size", [0, 1000, SPOOL_IN_MEMORY, SPOOL_IN_MEMORY + 1, 3 * SPOOL_IN_MEMORY + 7])
def test_a_body_reads_back_byte_for_byte_in_memory_or_spooled(tmp_path: Path, size: int) -> None:
    body = bytes(i * 7 % 251 for i in range(size))
    spool = Spool(tmp_path / "incoming")
    for start in range(0, size, 65536):
        spool.write(body[start : start + 65536])
    assert spool.size == size
    assert bytes(spool.view()) == body
    # Only a body past the in-memory share touches the disk, and then as an unnamed file.
    assert (tmp_path / "incoming").exists() == (size > SPOOL_IN_MEMORY)
    if size > SPOOL_IN_MEMORY:
        assert not list((tmp_path / "incoming").iterdir())
    spool.close()


class _FullDisk(io.BytesIO):
    def write(self, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_while_spooling_is_storage_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "TemporaryFile", lambda **_: _FullDisk())
    spool = Spool(tmp_path)
    spool.write(bytes(SPOOL_IN_MEMORY))
    with pytest.raises(StorageFull) as refused:
        spool.write(b"one byte too many")
    assert refused.value.retry and refused.value.http_status == 507
    spool.close()


def _upload_scope(size: int) -> Scope:
    headers = [(b"content-length", str(size).encode())]
    return {"type": "http", "method": "PUT", "path": "/v1/meetings/m/chunks/0", "headers": headers}


class _Client:
    """A client sending ``parts`` of its body, all but the first only once ``rest`` is set."""

    def __init__(self, parts: list[bytes], rest: asyncio.Event | None = None) -> None:
        self.parts, self.rest = parts, rest
        self.sent: list[Message] = []
        self.stalled = asyncio.Event()  # it has sent its first part and holds the rest back
        self.given = 0

    async def receive(self) -> Message:
        if self.given and self.rest is not None:
            self.stalled.set()
            await self.rest.wait()
        self.given += 1
        if self.parts:
            body = self.parts.pop(0)
            return {"type": "http.request", "body": body, "more_body": bool(self.parts)}
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.sent.append(message)


def test_the_upload_slot_bounds_bodies_being_received_not_requests_being_handled(tmp_path: Path) -> None:
    # One slot: an upload whose body is in, still being handled (stored, committed), does not hold it;
    # an upload still sending its body does, and the next one is then refused with 503 uploads_busy.
    handling = asyncio.Event()
    proceed = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        handling.set()
        await proceed.wait()
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    guard = BodyGuard(
        app, max_chunk_bytes=1000, timeout_s=5.0, max_uploads=1, spool_dir=tmp_path, check_signature=print
    )

    async def scenario() -> list[list[Message]]:
        first = _Client([b"x" * 10])
        handled = asyncio.create_task(guard(_upload_scope(10), first.receive, first.send))
        await handling.wait()
        body_rest = asyncio.Event()
        second = _Client([b"y" * 5, b"y" * 5], body_rest)
        receiving = asyncio.create_task(guard(_upload_scope(10), second.receive, second.send))
        await asyncio.wait_for(second.stalled.wait(), 5)  # it holds the slot while its body comes
        third = _Client([b"z" * 10])
        await guard(_upload_scope(10), third.receive, third.send)
        body_rest.set()
        proceed.set()
        await asyncio.gather(handled, receiving)
        return [first.sent, second.sent, third.sent]

    first, second, third = asyncio.run(scenario())
    assert [first[0]["status"], second[0]["status"], third[0]["status"]] == [201, 201, 503]
    assert b"uploads_busy" in third[1]["body"]
    assert guard.uploads == 0
