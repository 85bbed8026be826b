"""The live-audio hub without a server: where a listener starts, one watcher shared by a meeting's
listeners, growth waking them, the listener limit, and a recording that cannot be read."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from audioflow.api.routes.live_audio import LiveAudioHub, Watch, _start
from audioflow.api.ws import TooManyListeners
from audioflow.core.db import queries
from audioflow.core.errors import BadRequest, RangeNotSatisfiable
from audioflow.core.storage import LocalStorage
from audioflow.core.wav import AudioFormat, canonical_header

pytestmark = pytest.mark.asyncio

FMT = AudioFormat(16000, 1, 16)
SECOND = 32000


def _write(path: Path, pcm_bytes: int) -> None:
    path.write_bytes(canonical_header(FMT, pcm_bytes) + bytes(pcm_bytes))


@pytest.fixture
def recording(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Path]]:
    """A context whose meeting "m" exists, is live, and whose recording is ``path``."""
    storage = LocalStorage(tmp_path, fsync=False)
    path = storage.recording_path("m")
    path.parent.mkdir(parents=True)
    _write(path, 2 * SECOND)
    status = SimpleNamespace(phase="live")
    monkeypatch.setattr(queries, "get_meeting", lambda session, meeting_id: None)
    monkeypatch.setattr(queries, "meeting_status", lambda session, meeting_id: status)
    ctx = SimpleNamespace(
        sessions=lambda: contextlib.nullcontext(None),
        storage=storage,
    )
    yield ctx, path


def _watch(length: int) -> Watch:
    return Watch("m", cast(Any, None), FMT, length)  # _start reads no audio


@pytest.mark.parametrize(
    ("start", "back_ms", "expected"),
    [
        ("live", "", 10 * SECOND),
        ("live", "1000", 9 * SECOND),
        ("live", "60000", 0),  # not before the first sample
        ("start", "", 0),
        ("0", "", 0),
        (str(4 * SECOND), "", 4 * SECOND),
        (str(10 * SECOND), "", 10 * SECOND),  # the edge itself: a reconnect that had everything
    ],
)
async def test_where_a_listener_starts(start: str, back_ms: str, expected: int) -> None:
    assert _start(_watch(10 * SECOND), start, back_ms) == expected


@pytest.mark.parametrize(
    ("start", "back_ms", "error", "code"),
    [
        ("3", "", BadRequest, "invalid_from"),
        ("later", "", BadRequest, "invalid_from"),
        ("١٢", "", BadRequest, "invalid_from"),  # digits int() would read, but not ASCII
        ("9" * 16, "", BadRequest, "invalid_from"),
        (str(10 * SECOND + 2), "", RangeNotSatisfiable, "offset_beyond_edge"),
        ("live", "-5", BadRequest, "invalid_back_ms"),
        ("live", "60001", BadRequest, "invalid_back_ms"),
        ("start", "10", BadRequest, "invalid_back_ms"),
    ],
)
async def test_bad_starts_are_refused_by_name(
    start: str, back_ms: str, error: type[Exception], code: str
) -> None:
    with pytest.raises(error) as refused:
        _start(_watch(10 * SECOND), start, back_ms)
    assert getattr(refused.value, "code", None) == code


async def test_listeners_of_a_meeting_share_one_watcher_woken_by_growth(recording: tuple[Any, Path]) -> None:
    ctx, path = recording
    hub = LiveAudioHub(10, poll_s=0.01, phase_check_s=60)
    async with hub.listen(ctx, "m") as first, hub.listen(ctx, "m") as second:
        assert first is second and first.length == 2 * SECOND and hub.listeners == 2
        waiting = first.changed
        with path.open("r+b") as handle:  # an append, as the concat worker makes it: PCM, then header
            handle.seek(0, 2)
            handle.write(bytes(SECOND))
            handle.seek(0)
            handle.write(canonical_header(FMT, 3 * SECOND))
        await asyncio.wait_for(waiting.wait(), 2)
        assert first.length == 3 * SECOND
        assert first.read(2 * SECOND, 4) == bytes(4)
    assert hub.listeners == 0 and not hub._watches  # the last one out closed the watcher
    with pytest.raises(OSError):  # and its file
        first.read(0, 1)


async def test_the_listener_limit_counts_every_meeting(recording: tuple[Any, Path]) -> None:
    ctx, _ = recording
    hub = LiveAudioHub(1, poll_s=0.01, phase_check_s=60)
    async with hub.listen(ctx, "m"):
        with pytest.raises(TooManyListeners) as refused:
            async with hub.listen(ctx, "m"):
                pass
        assert refused.value.http_status == 429
    async with hub.listen(ctx, "m"):  # room again
        pass


async def test_a_recording_that_cannot_be_read_ends_its_listeners(recording: tuple[Any, Path]) -> None:
    ctx, path = recording
    hub = LiveAudioHub(10, poll_s=0.01, phase_check_s=60)
    async with hub.listen(ctx, "m") as watch:
        waiting = watch.changed
        with path.open("r+b") as handle:
            handle.write(b"JUNK")  # no longer a WAV header
        await asyncio.wait_for(waiting.wait(), 2)
        assert watch.state == "broken" and "cannot be read" in watch.problem
