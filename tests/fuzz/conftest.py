"""One real gateway process for the fuzzers, on real Redis and a real database, with data to reach.

Before fuzzing, a processing and a concat worker turn ``fz-deep`` into a completed meeting (recording,
transcript, events); then the workers stop, so nothing the fuzzer sends changes phase behind its back
and ``live.wav`` of a fuzzer-made meeting can never start streaming forever (it has no recording).
``fz-live`` has chunks but no recording and ``fz-pending`` no chunks. The gateway may fetch chunks by
URL from an ingest root (``file:``) and from a local HTTP server on its allowlist.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from audioflow.core.wav import AudioFormat
from audioflow.workers.simulate import cut_chunks, load_speech
from tests import services
from tests.factories import tone_pcm, wav_bytes
from tests.integration.stack import Stack, make_stack

DEEP = "fz-deep"
LIVE = "fz-live"
PENDING = "fz-pending"
MAX_CHUNK_BYTES = 200_000


@dataclass(frozen=True)
class World:
    database: str  # "postgresql" or "sqlite"
    stack: Stack
    root: Path
    files_url: str  # the local file server on the gateway's allowlist
    good_urls: tuple[str, ...]  # a good chunk, by file: and by allowlisted http:
    bad_urls: tuple[str, ...]  # each to be refused with a 4xx: before fetching, or after reading

    @property
    def base_url(self) -> str:
        return self.stack.base_url


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the gateway hangs up on a file past its size limit: expected, not worth a traceback


def _files(root: Path) -> None:
    """The chunks the gateway can be pointed at: good, other format, not a WAV, too large."""
    (root / "chunks").mkdir(parents=True)
    speech = AudioFormat(16000, 1, 16)
    (root / "chunks" / "tone.wav").write_bytes(wav_bytes(tone_pcm(0.25, speech, seed=7), speech))
    stereo = AudioFormat(8000, 2, 16)
    (root / "chunks" / "stereo.wav").write_bytes(wav_bytes(tone_pcm(0.25, stereo, seed=8), stereo))
    (root / "chunks" / "text.wav").write_bytes(b"not a wav at all")
    (root / "chunks" / "big.wav").write_bytes(wav_bytes(tone_pcm(7.0, speech), speech))


def _stop_workers(stack: Stack) -> None:
    for kind in ("processing", "concat"):
        for proc in stack.procs.pop(kind, []):
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)


def _preload(stack: Stack) -> None:
    fmt, pcm = load_speech()
    for seq, body in enumerate(cut_chunks(fmt, pcm, 2.0, count=3)):
        assert stack.send(DEEP, seq, body) == 201, stack.logs()
    stack.post(f"/v1/meetings/{DEEP}/end").raise_for_status()
    deep = stack.wait_completed(DEEP, timeout=120)
    assert deep["phase"] == "completed" and deep["chunks_transcribed"] == 3, deep
    _stop_workers(stack)
    for seq, body in enumerate(cut_chunks(fmt, pcm, 0.5, count=2)):
        assert stack.send(LIVE, seq, body) == 201, stack.logs()
    stack.post("/v1/meetings", json={"id": PENDING}).raise_for_status()


@contextlib.contextmanager
def _database(request: pytest.FixtureRequest, workdir: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{workdir / 'audioflow.db'}"
        return
    with services.fresh_postgres_database(request.getfixturevalue("postgres_server_url")) as url:
        yield url


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def fuzz_world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, redis_server_url: str
) -> Iterator[World]:
    workdir = tmp_path_factory.mktemp(f"fuzz-{request.param}")
    root = workdir / "ingest"
    _files(root)
    handler = functools.partial(_Quiet, directory=str(root))
    server = _Server(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    http = f"http://127.0.0.1:{server.server_address[1]}"
    prefix = services.redis_prefix()
    with _database(request, workdir) as database_url:
        stack = make_stack(
            workdir,
            redis_server_url,
            database_url,
            prefix,
            AUDIOFLOW_INGEST_ROOT=str(root),
            AUDIOFLOW_URL_ALLOWLIST=f"{http}/chunks/",
            AUDIOFLOW_MAX_CHUNK_BYTES=str(MAX_CHUNK_BYTES),
            AUDIOFLOW_API_DOCS="true",  # the document the fuzzer checks is served
            AUDIOFLOW_LOG_LEVEL="WARNING",
        )
        try:
            stack.start_api()
            stack.start_worker("processing")
            stack.start_worker("concat")
            _preload(stack)
            yield World(
                database=request.param,
                stack=stack,
                root=root,
                files_url=http,
                good_urls=(
                    f"file://{root}/chunks/tone.wav",
                    "file:chunks/tone.wav",  # relative to the ingest root
                    f"{http}/chunks/tone.wav",
                ),
                bad_urls=(
                    f"file://{root}/chunks/stereo.wav",  # another format than the meeting's
                    f"{http}/chunks/text.wav",
                    f"{http}/chunks/big.wav",
                    f"file://{root}/chunks/missing.wav",
                    "file:///etc/passwd",
                    f"file://{root}/../../etc/passwd",
                    f"{http}/elsewhere/tone.wav",
                    f"http://user@127.0.0.1:{server.server_address[1]}/chunks/tone.wav",
                    "https://example.invalid/chunks/tone.wav",
                    "ftp://example.invalid/tone.wav",
                ),
            )
        finally:
            stack.stop()
            server.shutdown()
            server.server_close()
            services.delete_prefix(redis_server_url, prefix)
