"""Deleting a meeting: work on it stops, its followers end cleanly, and nothing of it survives into a new
meeting with the same id (issue 13, rows 4 and 12)."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import redis
from websockets.exceptions import ConnectionClosed

from tests.factories import tone_pcm, wav_bytes
from tests.integration.stack import Stack

ONE_FRAME = wav_bytes(b"\x01\x00")  # 46 bytes: a chunk of one 16-bit mono frame


def chunk(seq: int, seconds: float = 1.0) -> bytes:
    return wav_bytes(tone_pcm(seconds, seed=seq))


def delete(stack: Stack, meeting_id: str) -> httpx.Response:
    return stack.delete(f"/v1/meetings/{meeting_id}")


def meeting_dir(stack: Stack, meeting_id: str) -> Path:
    return stack.workdir / "data" / "meetings" / meeting_id


def open_files_under(pid: int, folder: Path) -> list[str]:
    """What process ``pid`` holds open in ``folder`` (deleted files show as ``... (deleted)``)."""
    found = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith(str(folder)):
                found.append(target)
    return found


def keys_without_expiry(stack: Stack, meeting_id: str) -> dict[str, str]:
    """Redis keys named after the meeting that would live forever: ``{key: type}``."""
    client = redis.Redis.from_url(stack.env["REDIS_URL"], decode_responses=True)
    try:
        prefix = stack.env["AUDIOFLOW_REDIS_PREFIX"]
        return {
            key: str(client.type(key))
            for key in client.scan_iter(match=f"{prefix}*{meeting_id}*", count=1000)
            if client.ttl(key) == -1
        }
    finally:
        client.close()


def work_drained(stack: Stack) -> bool:
    """Both work streams delivered everything and have nothing pending."""
    client = redis.Redis.from_url(stack.env["REDIS_URL"], decode_responses=True)
    try:
        prefix = stack.env["AUDIOFLOW_REDIS_PREFIX"]
        for stream in ("transcribe", "concat"):
            groups: list[dict[str, Any]] = client.xinfo_groups(prefix + stream)
            if not groups or any(g["pending"] or g["lag"] for g in groups):
                return False
        return True
    finally:
        client.close()


def replay(stack: Stack, meeting_id: str, settle_s: float = 1.5) -> list[dict[str, Any]]:
    """Every event the meeting's WebSocket replays from the start (read until it is quiet)."""
    got: list[dict[str, Any]] = []
    with stack.events(meeting_id) as ws:
        while True:
            try:
                got.append(json.loads(ws.recv(timeout=settle_s)))
            except TimeoutError:
                return got


def test_deleting_a_meeting_stops_its_concat_worker_promptly(make: Callable[..., Stack]) -> None:
    """A concat worker bridging a long gap of one-frame seqs stops within seconds of the DELETE: it lets go
    of the deleted files (no more writing into them) and re-creates no file, row or Redis key."""
    stack = make(
        AUDIOFLOW_GAP_TIMEOUT_S="1",
        AUDIOFLOW_MAX_SEQ_AHEAD="10000000",  # so that the gap is allowed: the point here is the DELETE
        AUDIOFLOW_MAX_GAP_S="100000",
        AUDIOFLOW_FSYNC="true",  # bridging at disk speed: still under way when the DELETE comes
    )
    stack.start_api()
    worker = stack.start_worker("concat")
    assert stack.send("doomed", 0, ONE_FRAME) == 201
    assert stack.send("doomed", 10_000_000, ONE_FRAME) == 201  # 9 999 999 seqs to bridge, a frame each
    index = meeting_dir(stack, "doomed") / "recording.wav.idx"
    stack.wait_until(
        "the bridging to be under way", lambda: index.exists() and index.stat().st_size > 41 * 2000, 60, 0.05
    )
    assert delete(stack, "doomed").status_code == 204

    def let_go() -> bool:
        return not open_files_under(worker.pid, meeting_dir(stack, "doomed"))

    stack.wait_until("the concat worker to let go of the deleted meeting's files", let_go, 10, 0.1)
    time.sleep(2)  # long enough for a worker that carried on to show it
    assert worker.poll() is None, stack.logs()
    assert not meeting_dir(stack, "doomed").exists(), "the deleted meeting's folder came back"
    assert stack.get("/v1/meetings/doomed").status_code == 404
    assert keys_without_expiry(stack, "doomed") == {}


def test_a_deleted_meeting_leaves_nothing_for_a_new_one_with_the_same_id(make: Callable[..., Stack]) -> None:
    """Work still queued for a deleted meeting is dropped without a trace: no event stream or mark is
    re-created (none lives on without an expiry), and a new meeting with the same id replays only its own
    events."""
    stack = make()
    stack.start_api()
    assert stack.post("/v1/meetings", json={"id": "reborn"}).status_code == 201
    for seq in range(4):
        assert stack.send("reborn", seq, chunk(seq)) == 201
    assert delete(stack, "reborn").status_code == 204
    for kind in ("processing", "concat"):  # the queued work meets a meeting that is gone
        stack.start_worker(kind)
    stack.wait_until("the queued work to be consumed", lambda: work_drained(stack), 60)
    time.sleep(1)  # a worker's last event, if any, lands after its ack
    assert keys_without_expiry(stack, "reborn") == {}
    assert not meeting_dir(stack, "reborn").exists()

    born = time.time()
    assert stack.post("/v1/meetings", json={"id": "reborn"}).status_code == 201
    assert stack.send("reborn", 0, chunk(100)) == 201
    stack.wait_until(
        "the new meeting's chunk to be recorded", lambda: stack.meeting("reborn")["chunks_concatenated"]
    )
    events = replay(stack, "reborn")
    old = [e for e in events if e["ts"] < born]
    assert not old, f"the new meeting replays the deleted one's events: {old}"
    assert [e["data"]["seq"] for e in events if e["type"] == "chunk.received"] == [0]
    status = stack.meeting("reborn")
    assert (status["chunks_received"], status["concatenated_through"]) == (1, 0)


def test_delete_ends_live_wav_readers_and_event_followers_cleanly(make: Callable[..., Stack]) -> None:
    """A ``live.wav`` reader following a meeting that is deleted gets a complete chunked body that simply
    ends (no truncated body, no traceback in the gateway), and a WebSocket follower a close frame."""
    stack = make()
    stack.start_api()
    stack.start_worker("concat")
    for seq in range(2):
        assert stack.send("followed", seq, chunk(seq)) == 201
    stack.wait_until("the recording", lambda: stack.meeting("followed")["concatenated_through"] == 1)

    received: list[bytes] = []
    outcome: dict[str, BaseException | None] = {}

    def follow() -> None:
        try:
            url = f"/v1/meetings/followed/live.wav?from=start&token={stack.token}"
            with httpx.Client(base_url=stack.base_url, timeout=30) as client, client.stream("GET", url) as r:
                assert r.status_code == 200
                for piece in r.iter_raw():
                    received.append(piece)
            outcome["error"] = None
        except BaseException as exc:
            outcome["error"] = exc

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    stack.wait_until(
        "the live reader to catch up", lambda: sum(map(len, received)) >= 44 + 2 * 32000, 30, 0.05
    )
    with stack.events("followed") as ws:
        ws.recv(timeout=10)  # replaying: the follower is attached
        assert delete(stack, "followed").status_code == 204
        reader.join(15)
        assert not reader.is_alive(), "the live.wav reader was not ended by the DELETE"
        assert outcome["error"] is None, f"the live.wav body was cut short: {outcome['error']!r}"
        closed_by: ConnectionClosed | None = None
        last: dict[str, Any] = {}
        deadline = time.monotonic() + 15
        while closed_by is None and time.monotonic() < deadline:
            try:
                last = json.loads(ws.recv(timeout=1))
            except TimeoutError:
                continue
            except ConnectionClosed as exc:
                closed_by = exc
        assert closed_by is not None, "the event follower was not closed after the DELETE"
        assert closed_by.rcvd is not None, "closed without a close frame"
        assert closed_by.rcvd.code == 4404 and last["error"]["code"] == "meeting_deleted", (closed_by, last)
    assert sum(map(len, received)) == 44 + 2 * 32000
    for path in sorted(stack.workdir.glob("api-*.log")):
        log = path.read_text(errors="replace")
        assert "Traceback" not in log, log[-4000:]
        assert "Exception in ASGI application" not in log, log[-4000:]
