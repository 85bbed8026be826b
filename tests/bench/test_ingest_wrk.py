"""The wrk runner's request list (``bench.ingest_wrk``): real wrk, with its Lua script, against a tiny
local server that answers 201. A run that sends past its signed list would resend requests the gateway
answers as duplicates, so the runner refuses it instead of reporting a mixed rate. Nothing here asserts a
time or a speed."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bench.common import Unmeasured
from bench.ingest_wrk import lines_for, wrk

pytestmark = pytest.mark.integration


class _Created(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the gateway

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Created)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _requests(tmp_path: Path, n: int) -> tuple[Path, Path]:
    chunk = tmp_path / "chunk.wav"
    chunk.write_bytes(b"RIFF")
    lines = tmp_path / "requests.tsv"
    line = "POST\t/webhooks/chunk\tapplication/json\tmsg_{}\t0\tsig\t{{}}\n"
    lines.write_text("".join(line.format(i) for i in range(n)))
    return lines, chunk


def test_a_run_that_runs_out_of_signed_requests_is_refused(server: str, tmp_path: Path) -> None:
    lines, chunk = _requests(tmp_path, 20)
    with pytest.raises(Unmeasured, match="ran out of the 10 requests signed"):
        wrk(server, lines, chunk, 5, 15, 1, 2)


def test_a_run_within_its_list_counts_every_answer(server: str, tmp_path: Path) -> None:
    lines, chunk = _requests(tmp_path, lines_for(10))  # ten times what a 1 s run at the ceiling sends
    summary = wrk(server, lines, chunk, 0, lines_for(10), 1, 2)
    assert summary["resent"] == 0
    assert summary["c201"] > 0
    assert summary["c201"] + summary["c200"] + summary["cother"] == summary["requests"]
