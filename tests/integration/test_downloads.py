"""``POST /webhooks/chunk`` against a URL that trickles (1 KB every 0.25 s, for at most 20 s): each
download fails at its total deadline instead of lasting as long as the server likes, at most
``MAX_DOWNLOADS`` run at once (more get 503 with Retry-After), and meanwhile the reader API and
readiness answer at once, since downloads have their own threads. A bounded test on 127.0.0.1."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from audioflow.api.fetch import MAX_DOWNLOADS
from audioflow.core.signing import sign
from tests.integration.stack import Stack

TRICKLE_S = 20.0


class Trickle(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "audio/wav")
        self.end_headers()
        stop = time.monotonic() + TRICKLE_S
        try:
            while time.monotonic() < stop:
                self.wfile.write(b"\0" * 1024)
                self.wfile.flush()
                time.sleep(0.25)
        except OSError:
            pass  # the gateway gave up: that is the point

    def log_message(self, *_: object) -> None:
        pass


@contextlib.contextmanager
def trickle_server() -> Iterator[str]:
    """A server on 127.0.0.1 whose every URL trickles (see `Trickle`); yields its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def trickle_url() -> Iterator[str]:
    with trickle_server() as base:
        yield f"{base}chunks/slow.wav"


def post_chunk_url(stack: Stack, seq: int, url: str) -> httpx.Response:
    """A signed ``POST /webhooks/chunk`` of meeting "slow" naming ``url``."""
    body = json.dumps({"meetingId": "slow", "seq": seq, "url": url}).encode()
    headers = {"content-type": "application/json", **sign(stack.secret, body).as_dict()}
    with httpx.Client(base_url=stack.base_url, timeout=60) as client:
        return client.post("/webhooks/chunk", content=body, headers=headers)


def test_trickling_urls_hit_the_deadline_and_the_cap_and_readers_stay_fast(
    make: Callable[..., Stack], trickle_url: str
) -> None:
    allow = trickle_url.rsplit("/", 1)[0] + "/"
    stack = make(AUDIOFLOW_URL_ALLOWLIST=allow, AUDIOFLOW_DOWNLOAD_TIMEOUT_S="2")
    stack.start_api()
    assert stack.post("/v1/meetings", json={"id": "slow"}).status_code == 201

    started = time.monotonic()
    one = post_chunk_url(stack, 0, trickle_url)
    took = time.monotonic() - started
    assert one.status_code == 502 and one.json()["error"]["code"] == "download_failed", one.text
    assert "AUDIOFLOW_DOWNLOAD_TIMEOUT_S" in one.json()["error"]["message"]
    assert took < TRICKLE_S / 2, f"the download lasted {took:.1f} s: no total deadline"

    with ThreadPoolExecutor(MAX_DOWNLOADS + 4) as pool:
        replies = [
            pool.submit(post_chunk_url, stack, seq, trickle_url) for seq in range(1, MAX_DOWNLOADS + 5)
        ]
        time.sleep(0.5)  # the downloads are in flight
        for path in ("/readyz", "/v1/meetings/slow"):
            began = time.monotonic()
            assert stack.get(path).status_code == 200
            assert time.monotonic() - began < 3, f"{path} waited behind the downloads"
        codes = sorted(r.result().status_code for r in replies)
    busy = [c for c in codes if c == 503]
    assert len(busy) == 4 and codes.count(502) == MAX_DOWNLOADS, codes
    assert stack.meeting("slow")["chunks_received"] == 0
