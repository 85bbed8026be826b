"""The acceptance catalogue of bad input: every case names its status and error code, and nothing that
was already accepted is lost. Real gateway processes on real Redis, on PostgreSQL and on SQLite.

Two gateways share one database and Redis per parametrization: ``a`` (a 200 000-byte chunk limit, an
ingest root and a URL allowlist served by a local http.server) and ``b`` (auto-create off, no ingest
root, no allowlist). Before the table runs, ``a`` accepts seq 0 of meeting ``m1``; after every case
that chunk is still there, byte for byte, and the gateways are alive.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import json
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from audioflow.core.keys import Keys
from audioflow.core.signing import chunk_target, generate_secret, sign
from audioflow.core.wav import AudioFormat
from tests import services
from tests.factories import SPEECH_FORMAT, extensible_wav, fmt_body, riff, riff_chunk, tone_pcm, wav_bytes
from tests.integration.stack import Stack, make_stack

pytestmark = pytest.mark.integration

MAX_CHUNK_BYTES = 200_000
MAX_SEQ_AHEAD = 1000  # AUDIOFLOW_MAX_SEQ_AHEAD's default
MAX_CHUNK_S = 3  # AUDIOFLOW_MAX_CHUNK_S of gateway a


# Inputs ------------------------------------------------------------------------------------------------


def chunk(seed: int = 0, seconds: float = 1.0, fmt: AudioFormat = SPEECH_FORMAT) -> bytes:
    return wav_bytes(tone_pcm(seconds, fmt, seed=seed), fmt)


GOOD = chunk(0)  # seq 0 of m1: 16 kHz mono 16-bit, 32 044 bytes
OTHER = chunk(1)  # same format, other bytes
BIG = chunk(0, seconds=8.0)  # 256 044 bytes: over the limit
FORMAT_8K = AudioFormat(8000, 1, 16)
STEREO = AudioFormat(16000, 2, 16)
PCM24 = AudioFormat(16000, 1, 24)


def ieee_float_wav() -> bytes:
    """A plain (format tag 3) 32-bit float WAV."""
    pcm = struct.pack("<1600f", *([0.25] * 1600))
    return riff(riff_chunk(b"fmt ", fmt_body(3, 1, 16000, 32)), riff_chunk(b"data", pcm))


PCM16_FMT = riff_chunk(b"fmt ", fmt_body())
ONE_SECOND = riff_chunk(b"data", bytes(32000))


def pcm24_extensible() -> bytes:
    frames = 16000
    pcm = b"".join((i * 37 % 2**24).to_bytes(3, "little") for i in range(frames))
    return extensible_wav(pcm, PCM24)


# The world: gateways, an ingest root, a little HTTP file server ------------------------------------------


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")

    def json(self) -> Any:
        return json.loads(self.body)


def _never_500(response: httpx.Response) -> None:
    if response.status_code == 500:
        response.read()
        raise AssertionError(
            f"{response.request.method} {response.request.url} answered 500: {response.text}"
        )


def _reply(response: httpx.Response) -> Reply:
    return Reply(response.status_code, response.content, dict(response.headers))


@dataclass
class World:
    a: Stack
    b: Stack
    root: Path
    outside: Path
    http_port: int

    # requests ------------------------------------------------------------------------------------------
    def put(
        self,
        meeting_id: str,
        seq: int | str,
        body: bytes,
        *,
        stack: Stack | None = None,
        headers: dict[str, str] | None = None,
        sign_with: str | None = None,
        **sign_kw: Any,
    ) -> Reply:
        stack = stack or self.a
        target = chunk_target(meeting_id, seq)
        signed = {
            "content-type": "audio/wav",
            **sign(sign_with or stack.secret, body, target=target, **sign_kw).as_dict(),
        }
        signed.update(headers or {})
        response = stack.client.put(f"/v1/meetings/{meeting_id}/chunks/{seq}", content=body, headers=signed)
        return _reply(response)

    def put_raw_path(self, raw_path: str, body: bytes = GOOD) -> Reply:
        """PUT to a path exactly as written (no client-side normalisation of ``..`` or escapes)."""
        headers = {"content-type": "audio/wav", **sign(self.a.secret, body).as_dict()}
        return raw_request(self.a.port, "PUT", raw_path, body, headers)

    def webhook(
        self, payload: dict[str, Any] | bytes, *, stack: Stack | None = None, msg_id: str | None = None
    ) -> Reply:
        stack = stack or self.a
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        headers = {"content-type": "application/json", **sign(stack.secret, body, msg_id=msg_id).as_dict()}
        return _reply(stack.client.post("/webhooks/chunk", content=body, headers=headers))

    def fetch(self, meeting_id: str, seq: int, url: str, *, stack: Stack | None = None) -> Reply:
        return self.webhook({"meetingId": meeting_id, "seq": seq, "url": url}, stack=stack)

    def read(self, path: str, *, anonymous: bool = False, token: str | None = None, **kwargs: Any) -> Reply:
        """GET with the reader token (or ``token``), or with none at all when ``anonymous``."""
        headers = {} if anonymous else {"authorization": f"Bearer {token or self.a.token}"}
        return _reply(self.a.client.get(path, headers=headers, **kwargs))

    def file_url(self, relative: str) -> str:
        return f"file://{self.root}/{relative}"

    def http_url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http_port}{path}"


def raw_request(port: int, method: str, raw_path: str, body: bytes, headers: dict[str, str]) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, raw_path, body=body, headers=headers)
        response = conn.getresponse()
        reply = Reply(response.status, response.read(), dict(response.getheaders()))
    finally:
        conn.close()
    assert reply.status != 500, f"{method} {raw_path} answered 500: {reply.text}"
    return reply


def raw_exchange(port: int, head: bytes, body_pieces: list[bytes]) -> Reply:
    """Send hand-made framing, then read whatever the gateway answers (it may answer early)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        for piece in body_pieces:
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break  # the gateway answered and closed before reading everything
        response = http.client.HTTPResponse(sock)
        response.begin()
        reply = Reply(response.status, response.read(), dict(response.getheaders()))
        response.close()
    assert reply.status != 500, f"raw request answered 500: {reply.text}"
    return reply


def _signed_head(world: World, path: str, body: bytes, framing: str) -> bytes:
    lines = [
        f"PUT {path} HTTP/1.1",
        f"Host: 127.0.0.1:{world.a.port}",
        "Content-Type: audio/wav",
        *(f"{k}: {v}" for k, v in sign(world.a.secret, body).as_dict().items()),
        framing,
        "Connection: close",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _chunked(body: bytes, piece: int = 32 * 1024) -> list[bytes]:
    parts = [body[i : i + piece] for i in range(0, len(body), piece)]
    return [b"%x\r\n%s\r\n" % (len(p), p) for p in parts] + [b"0\r\n\r\n"]


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def module_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'audioflow.db'}"
        return
    server = request.getfixturevalue("postgres_server_url")
    with services.fresh_postgres_database(server) as url:
        yield url


@pytest.fixture(scope="module")
def world(
    module_database_url: str, redis_server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    base = tmp_path_factory.mktemp("bad-input")
    root, outside, served = base / "ingest", base / "outside", base / "served"
    for folder in (root / "sub", outside, served / "chunks" / "sub", served / "private"):
        folder.mkdir(parents=True)
    (root / "ok.wav").write_bytes(chunk(10))
    (root / "sub" / "ok.wav").write_bytes(chunk(11))
    (root / "big.wav").write_bytes(BIG)
    (root / "notwav.txt").write_bytes(b"just some text, not audio\n" * 10)
    (root / "8k.wav").write_bytes(chunk(12, fmt=FORMAT_8K))
    (outside / "outside.wav").write_bytes(chunk(13))
    (root / "escape.wav").symlink_to(outside / "outside.wav")
    (root / "escape-dir").symlink_to(outside)
    (root / "loop.wav").symlink_to(root / "loop.wav")
    (served / "chunks" / "ok.wav").write_bytes(chunk(20))
    (served / "chunks" / "big.wav").write_bytes(BIG)
    (served / "private" / "ok.wav").write_bytes(chunk(21))

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(served)))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    http_port = int(server.server_address[1])

    prefixes = [services.redis_prefix(), services.redis_prefix()]
    (base / "a").mkdir()
    (base / "b").mkdir()
    a = make_stack(
        base / "a",
        redis_server_url,
        module_database_url,
        prefixes[0],
        AUDIOFLOW_MAX_CHUNK_BYTES=str(MAX_CHUNK_BYTES),
        AUDIOFLOW_INGEST_ROOT=str(root),
        AUDIOFLOW_URL_ALLOWLIST=f"http://127.0.0.1:{http_port}/chunks/, http://files.example",
        AUDIOFLOW_BODY_TIMEOUT_S="2",
        AUDIOFLOW_MAX_CHUNK_S=str(MAX_CHUNK_S),
    )
    b = make_stack(
        base / "b", redis_server_url, module_database_url, prefixes[1], AUDIOFLOW_AUTO_CREATE_MEETINGS="false"
    )
    try:
        for stack in (a, b):
            stack.client.event_hooks["response"].append(_never_500)
            stack.start_api()
        created = World(a, b, root, outside, http_port).put("m1", 0, GOOD)
        assert created.status == 201, created.text
        yield World(a, b, root, outside, http_port)
    finally:
        for stack in (a, b):
            stack.stop()
        server.shutdown()
        server.server_close()
        for prefix in prefixes:
            services.delete_prefix(redis_server_url, prefix)


def assert_nothing_lost(world: World) -> None:
    status = world.read("/v1/meetings/m1")
    assert status.status == 200, status.text
    assert status.json()["chunks_received"] == 1
    assert status.json()["format"] == {"sample_rate": 16000, "channels": 1, "bits": 16}
    again = world.put("m1", 0, GOOD)
    assert again.status == 200, again.text
    assert again.json()["status"] == "duplicate"
    assert again.json()["sha256"] == hashlib.sha256(GOOD).hexdigest()
    stored = world.a.workdir / "data" / "meetings" / "m1" / "chunks" / "00000000.wav"
    assert stored.read_bytes() == GOOD
    for stack in (world.a, world.b):
        assert stack.client.get("/healthz").status_code == 200


# The catalogue --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    send: Callable[[World], Reply]
    status: int
    code: str | None = None  # None: a success, or a refusal by the HTTP server itself (no envelope)
    keyword: str = ""  # the message names the problem
    check: Callable[[World, Reply], None] | None = None


def _flip_last_byte(body: bytes) -> bytes:
    return body[:-1] + bytes([body[-1] ^ 0xFF])


def _body_changed_after_signing(w: World) -> Reply:
    headers = {"content-type": "audio/wav", **sign(w.a.secret, GOOD).as_dict()}
    return _reply(w.a.client.put("/v1/meetings/m1/chunks/1", content=_flip_last_byte(GOOD), headers=headers))


def _replayed_to_another_path(w: World) -> Reply:
    """A delivery signed for m1/1, its headers and body replayed onto another meeting's seq 7."""
    headers = {"content-type": "audio/wav", **sign(w.a.secret, GOOD, target=chunk_target("m1", 1)).as_dict()}
    return _reply(w.a.client.put("/v1/meetings/victim/chunks/7", content=GOOD, headers=headers))


def _replayed_after_delete(w: World) -> Reply:
    """A captured upload replayed after its meeting was deleted, within the signature tolerance: it must
    not bring the meeting back (it used to be a 201 that recreated it)."""
    meeting_id = "replayed-after-delete"
    headers = {
        "content-type": "audio/wav",
        **sign(w.a.secret, GOOD, target=chunk_target(meeting_id, 0)).as_dict(),
    }
    url = f"/v1/meetings/{meeting_id}/chunks/0"
    assert w.a.client.put(url, content=GOOD, headers=headers).status_code == 201
    deleted = w.a.delete(f"/v1/meetings/{meeting_id}")
    assert deleted.status_code == 204, deleted.text
    replay = _reply(w.a.client.put(url, content=GOOD, headers=headers))
    assert w.read(f"/v1/meetings/{meeting_id}").status == 404, "the replay brought the meeting back"
    return replay


def _missing_headers(w: World) -> Reply:
    return _reply(
        w.a.client.put("/v1/meetings/m1/chunks/1", content=GOOD, headers={"content-type": "audio/wav"})
    )


def _with_signature(signature: str) -> Callable[[World], Reply]:
    def send(w: World) -> Reply:
        headers = {**sign(w.a.secret, GOOD).as_dict(), "webhook-signature": signature}
        return w.put("m1", 1, GOOD, headers=headers)

    return send


def _with_timestamp(raw: str) -> Callable[[World], Reply]:
    return lambda w: w.put("m1", 1, GOOD, headers={"webhook-timestamp": raw})


def _generator_body(w: World) -> Reply:
    def pieces() -> Iterator[bytes]:
        for start in range(0, len(BIG), 16 * 1024):
            yield BIG[start : start + 16 * 1024]

    headers = {"content-type": "audio/wav", **sign(w.a.secret, BIG).as_dict()}
    assert "content-length" not in headers
    return _reply(w.a.client.put("/v1/meetings/m1/chunks/1", content=pieces(), headers=headers))


def _length_claims_more(w: World) -> Reply:
    """Content-Length says 10 MB; the gateway refuses on the claim without waiting for the body."""
    head = _signed_head(w, "/v1/meetings/m1/chunks/1", GOOD, "Content-Length: 10000000")
    return raw_exchange(w.a.port, head, [GOOD])


def _length_claims_less_but_chunked(w: World) -> Reply:
    """Content-Length says 1000 while the body is chunked and larger than the limit."""
    head = _signed_head(
        w, "/v1/meetings/m1/chunks/1", BIG, "Content-Length: 1000\r\nTransfer-Encoding: chunked"
    )
    return raw_exchange(w.a.port, head, _chunked(BIG))


def _chunked_no_length(w: World) -> Reply:
    head = _signed_head(w, "/v1/meetings/m1/chunks/1", BIG, "Transfer-Encoding: chunked")
    return raw_exchange(w.a.port, head, _chunked(BIG))


def _unsigned_head_only(w: World, method: str, path: str, content_type: str) -> Reply:
    """A head that declares a body of 60 000 bytes but carries no signature, and no body: it is refused
    on its head (401), not after waiting AUDIOFLOW_BODY_TIMEOUT_S for a body (408)."""
    lines = [
        f"{method} {path} HTTP/1.1",
        f"Host: 127.0.0.1:{w.a.port}",
        f"Content-Type: {content_type}",
        "Content-Length: 60000",
        "Connection: close",
    ]
    return raw_exchange(w.a.port, ("\r\n".join(lines) + "\r\n\r\n").encode(), [])


def _slow_loris(w: World, method: str, path: str, body: bytes, content_type: str) -> Reply:
    """Declare the whole body, then trickle it a few bytes at a time, slower than the body timeout."""
    lines = [
        f"{method} {path} HTTP/1.1",
        f"Host: 127.0.0.1:{w.a.port}",
        f"Content-Type: {content_type}",
        f"Authorization: Bearer {w.a.admin_token}",
        *(f"{k}: {v}" for k, v in sign(w.a.secret, body).as_dict().items()),
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    with socket.create_connection(("127.0.0.1", w.a.port), timeout=30) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        started = time.monotonic()
        sock.settimeout(0.25)
        for offset in range(0, len(body), 8):
            try:
                sock.sendall(body[offset : offset + 8])
                if sock.recv(1, socket.MSG_PEEK):  # the gateway has answered
                    break
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
            assert time.monotonic() - started < 25, "the gateway waited on a trickling body for 25 s"
        sock.settimeout(30)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return Reply(response.status, response.read(), dict(response.getheaders()))


def _webhook_id_reused(w: World) -> Reply:
    msg_id = "msg_reused_" + uuid.uuid4().hex
    first = w.put("m-reuse", 0, chunk(30), msg_id=msg_id)
    assert first.status == 201, first.text
    retry = w.put("m-reuse", 0, chunk(30), msg_id=msg_id)  # the same delivery again is fine
    assert retry.status == 200, retry.text
    return w.put("m-reuse", 1, chunk(31), msg_id=msg_id)


def _webhook_id_reused_across_routes(w: World) -> Reply:
    msg_id = "msg_reused_" + uuid.uuid4().hex
    first = w.put("m-reuse-2", 0, chunk(32), msg_id=msg_id)
    assert first.status == 201, first.text
    body = json.dumps({"meetingId": "m-reuse-2", "seq": 1, "url": w.file_url("ok.wav")}).encode()
    return w.webhook(body, msg_id=msg_id)


def _format_of(meeting_id: str, expected: dict[str, int]) -> Callable[[World, Reply], None]:
    def check(w: World, reply: Reply) -> None:
        assert reply.json()["status"] == "created"
        assert w.read(f"/v1/meetings/{meeting_id}").json()["format"] == expected

    return check


def _received(meeting_id: str, sha_of: bytes) -> Callable[[World, Reply], None]:
    def check(w: World, reply: Reply) -> None:
        assert reply.json()["sha256"] == hashlib.sha256(sha_of).hexdigest()
        assert w.read(f"/v1/meetings/{meeting_id}").json()["chunks_received"] == 1

    return check


def _assert_absent(w: World, meeting_id: str) -> None:
    assert w.read(f"/v1/meetings/{meeting_id}").status == 404


def _m1_meeting(path_suffix: str = "") -> Callable[[World], Reply]:
    return lambda w: w.read(f"/v1/meetings/m1{path_suffix}")


CASES: list[Case] = [
    # signature ------------------------------------------------------------------------------------------
    Case("sig-missing-headers", _missing_headers, 401, "missing_signature", "webhook-signature"),
    Case("sig-wrong", _with_signature("v1," + "A" * 43 + "="), 401, "bad_signature", "signature"),
    Case("sig-v2-only", _with_signature("v2,whatever"), 401, "bad_signature", "signature"),
    Case("sig-garbage", _with_signature("garbage"), 401, "bad_signature", "signature"),
    Case(
        "sig-other-secret", lambda w: w.put("m1", 1, GOOD, sign_with=generate_secret()), 401, "bad_signature"
    ),
    Case("sig-body-changed-after-signing", _body_changed_after_signing, 401, "bad_signature", "body"),
    Case("sig-replayed-to-another-path", _replayed_to_another_path, 401, "bad_signature", "chunks/7"),
    Case(
        "sig-body-only-without-the-path",
        lambda w: _reply(
            w.a.client.put(
                "/v1/meetings/m1/chunks/1",
                content=GOOD,
                headers={"content-type": "audio/wav", **sign(w.a.secret, GOOD).as_dict()},
            )
        ),
        401,
        "bad_signature",
        "PUT /v1/meetings/m1/chunks/1",
    ),
    Case("sig-replayed-after-delete", _replayed_after_delete, 409, "meeting_deleted", "replay"),
    Case(
        "sig-stale-timestamp",
        lambda w: w.put("m1", 1, GOOD, timestamp=int(time.time()) - 301 - 5),
        401,
        "stale_timestamp",
        "timestamp",
    ),
    Case(
        "sig-future-timestamp",
        lambda w: w.put("m1", 1, GOOD, timestamp=int(time.time()) + 600),
        401,
        "stale_timestamp",
        "timestamp",
    ),
    Case("sig-timestamp-not-integer", _with_timestamp("yesterday"), 401, "bad_timestamp", "timestamp"),
    Case("sig-timestamp-huge", _with_timestamp("1" + "0" * 400), 401, "bad_timestamp", "timestamp"),
    Case(
        "sig-webhook-unsigned",
        lambda w: _reply(w.a.client.post("/webhooks/chunk", json={})),
        401,
        "missing_signature",
    ),
    # refused on the head alone: an unsigned client cannot make the gateway wait for (or hold) a body
    Case(
        "sig-missing-refused-before-the-body",
        lambda w: _unsigned_head_only(w, "PUT", "/v1/meetings/m1/chunks/1", "audio/wav"),
        401,
        "missing_signature",
        "webhook-signature",
    ),
    Case(
        "sig-webhook-missing-refused-before-the-body",
        lambda w: _unsigned_head_only(w, "POST", "/webhooks/chunk", "application/json"),
        401,
        "missing_signature",
        "webhook-signature",
    ),
    # content --------------------------------------------------------------------------------------------
    Case(
        "wav-not-a-wav", lambda w: w.put("m1", 1, b"ID3 this is an mp3, honest" * 20), 400, "not_wav", "RIFF"
    ),
    Case("wav-empty-body", lambda w: w.put("m1", 1, b""), 400, "not_wav", "empty"),
    Case("wav-truncated-header", lambda w: w.put("m1", 1, GOOD[:30]), 400, "truncated_header", "truncated"),
    Case("wav-truncated-data", lambda w: w.put("m1", 1, GOOD[:-100]), 400, "truncated_data", "declares"),
    Case(
        "wav-zero-length-data",
        lambda w: w.put("m1", 1, riff(PCM16_FMT, riff_chunk(b"data", b""))),
        400,
        "empty_data",
    ),
    Case(
        "wav-data-size-streaming-0xffffffff",
        lambda w: w.put("m1", 1, riff(PCM16_FMT, riff_chunk(b"data", bytes(32000), declared=0xFFFFFFFF))),
        400,
        "empty_data",
        "unknown length",
    ),
    Case(
        "wav-fmt-size-lies",
        lambda w: w.put("m1", 1, riff(riff_chunk(b"fmt ", fmt_body(), declared=100_000), ONE_SECOND)),
        400,
        "truncated_header",
        "declares 100000",
    ),
    Case(
        "wav-partial-frame",
        lambda w: w.put("m1", 1, riff(PCM16_FMT, riff_chunk(b"data", bytes(32001), pad=False))),
        400,
        "partial_frame",
        "multiple",
    ),
    Case(
        "wav-data-before-fmt", lambda w: w.put("m1", 1, riff(ONE_SECOND, PCM16_FMT)), 400, "data_before_fmt"
    ),
    Case(
        "wav-duplicate-fmt",
        lambda w: w.put("m1", 1, riff(PCM16_FMT, PCM16_FMT, ONE_SECOND)),
        400,
        "duplicate_fmt",
    ),
    Case("wav-no-data-chunk", lambda w: w.put("m1", 1, riff(PCM16_FMT)), 400, "no_data_chunk"),
    Case("wav-rf64", lambda w: w.put("m1", 1, b"RF64" + GOOD[4:]), 400, "not_wav", "RF64"),
    Case("wav-float", lambda w: w.put("m1", 1, ieee_float_wav()), 400, "unsupported_encoding", "float"),
    Case(
        "wav-float-extensible",
        lambda w: w.put("m1", 1, extensible_wav(bytes(6400), AudioFormat(16000, 1, 32), subformat_tag=3)),
        400,
        "unsupported_encoding",
        "float",
    ),
    Case(
        "wav-8khz-for-m1",
        lambda w: w.put("m1", 1, chunk(2, fmt=FORMAT_8K)),
        422,
        "format_mismatch",
        "8000 Hz",
    ),
    Case(
        "wav-stereo-for-m1",
        lambda w: w.put("m1", 1, chunk(2, fmt=STEREO)),
        422,
        "format_mismatch",
        "2 channels",
    ),
    Case(
        "wav-24bit-extensible-for-m1",
        lambda w: w.put("m1", 1, pcm24_extensible()),
        422,
        "format_mismatch",
        "24-bit",
    ),
    Case(
        "wav-24bit-extensible-new-meeting-accepted",
        lambda w: w.put("m24", 0, pcm24_extensible()),
        201,
        check=_format_of("m24", {"sample_rate": 16000, "channels": 1, "bits": 24}),
    ),
    Case(
        "wav-wrong-content-type",
        lambda w: w.put("m1", 1, GOOD, headers={"content-type": "application/octet-stream"}),
        415,
        "not_audio_wav",
        "audio/wav",
    ),
    Case(
        "wav-no-content-type",
        lambda w: _reply(
            w.a.client.put("/v1/meetings/m1/chunks/1", content=GOOD, headers=sign(w.a.secret, GOOD).as_dict())
        ),
        415,
        "not_audio_wav",
        "audio/wav",
    ),
    # a chunk far longer than a decode should take: two workers decoded one of 761 s (issue 13, row 9)
    Case(
        "wav-longer-than-max-chunk-s",
        lambda w: w.put("m1", 1, chunk(3, seconds=MAX_CHUNK_S + 1)),
        422,
        "chunk_too_long",
        "AUDIOFLOW_MAX_CHUNK_S",
    ),
    Case(
        "size-over-limit-content-length",
        lambda w: w.put("m1", 1, BIG),
        413,
        "body_too_large",
        str(MAX_CHUNK_BYTES),
    ),
    Case("size-over-limit-chunked-generator", _generator_body, 413, "body_too_large", str(MAX_CHUNK_BYTES)),
    Case("size-chunked-no-length-raw", _chunked_no_length, 413, "body_too_large", str(MAX_CHUNK_BYTES)),
    Case("size-length-claims-10mb", _length_claims_more, 413, "body_too_large", "10000000"),
    Case(
        "size-slow-loris-chunk",
        lambda w: _slow_loris(w, "PUT", "/v1/meetings/m1/chunks/1", OTHER, "audio/wav"),
        408,
        "body_timeout",
        "did not arrive",
    ),
    Case(
        "size-slow-loris-json",
        lambda w: _slow_loris(
            w, "POST", "/v1/meetings", b'{"id": "m-slow"}' + b" " * 2000, "application/json"
        ),
        408,
        "body_timeout",
        "did not arrive",
        check=lambda w, _: _assert_absent(w, "m-slow"),
    ),
    Case(
        "size-json-over-64k-on-reader-api",
        lambda w: _reply(
            w.a.post("/v1/meetings", content=b'{"id": "m-huge", "x": "' + b"a" * 70_000 + b'"}')
        ),
        413,
        "body_too_large",
        str(64 * 1024),
        check=lambda w, _: _assert_absent(w, "m-huge"),
    ),
    # Both framings at once is how requests are smuggled: the HTTP parser refuses it outright.
    Case("size-length-and-chunked-both", _length_claims_less_but_chunked, 400, None, "invalid http request"),
    # ids ------------------------------------------------------------------------------------------------
    Case("seq-negative", lambda w: w.put("m1", -1, GOOD), 400, "invalid_seq", "seq"),
    Case("seq-huge", lambda w: w.put("m1", 10_000_001, GOOD), 400, "invalid_seq", "10000000"),
    # a seq far past the meeting's highest would be bridged by that much silence (issue 13, row 4)
    Case(
        "seq-too-far-ahead",
        lambda w: w.put("m1", 1 + MAX_SEQ_AHEAD, GOOD),
        422,
        "seq_too_far_ahead",
        "AUDIOFLOW_MAX_SEQ_AHEAD",
    ),
    Case(
        "seq-ten-million-after-seq-0",
        lambda w: w.put("m1", 10_000_000, GOOD),
        422,
        "seq_too_far_ahead",
        "AUDIOFLOW_MAX_SEQ_AHEAD",
    ),
    Case(
        "seq-too-far-ahead-for-a-new-meeting",
        lambda w: w.put("m-far", MAX_SEQ_AHEAD, GOOD),
        422,
        "seq_too_far_ahead",
        "no chunk yet",
        check=lambda w, reply: _assert_absent(w, "m-far"),
    ),
    Case(
        "seq-as-far-ahead-as-allowed-accepted",
        lambda w: w.put("m-ahead", MAX_SEQ_AHEAD - 1, chunk(50)),
        201,
        check=_received("m-ahead", chunk(50)),
    ),
    Case("seq-non-numeric", lambda w: w.put("m1", "first", GOOD), 400, "invalid_seq", "seq"),
    Case("seq-decimal", lambda w: w.put("m1", "1.0", GOOD), 400, "invalid_seq", "seq"),
    Case("seq-very-long", lambda w: w.put("m1", "9" * 5000, GOOD), 400, "invalid_seq", "seq"),
    Case(
        "id-slash-encoded",
        lambda w: w.put_raw_path("/v1/meetings/m1%2Fx/chunks/1"),
        400,
        "invalid_meeting_id",
        "meeting id",
    ),
    Case(
        "id-dot-dot",
        lambda w: w.put_raw_path("/v1/meetings/../chunks/1"),
        400,
        "invalid_meeting_id",
        "meeting id",
    ),
    Case(
        "id-dot-dot-encoded",
        lambda w: w.put_raw_path("/v1/meetings/%2E%2E/chunks/1"),
        400,
        "invalid_meeting_id",
        "meeting id",
    ),
    Case(
        "id-traversal-encoded",
        lambda w: w.put_raw_path("/v1/meetings/..%2F..%2Fetc/chunks/1"),
        400,
        "invalid_meeting_id",
        "meeting id",
    ),
    Case(
        "id-nul",
        lambda w: w.put_raw_path("/v1/meetings/m1%00x/chunks/1"),
        400,
        "invalid_meeting_id",
        "meeting id",
    ),
    Case(
        "id-leading-dot", lambda w: w.put(".m1", 0, GOOD), 400, "invalid_meeting_id", "not starting with '.'"
    ),
    Case("id-129-chars", lambda w: w.put("m" * 129, 0, GOOD), 400, "invalid_meeting_id", "1-128"),
    Case(
        "id-space",
        lambda w: w.put_raw_path("/v1/meetings/m%201/chunks/1"),
        400,
        "invalid_meeting_id",
        "meeting id",
    ),
    # conflicts ------------------------------------------------------------------------------------------
    Case(
        "conflict-same-seq-other-bytes",
        lambda w: w.put("m1", 0, OTHER),
        409,
        "chunk_conflict",
        "different bytes",
    ),
    Case(
        "conflict-same-seq-other-format",
        lambda w: w.put("m1", 0, chunk(0, fmt=FORMAT_8K)),
        422,
        "format_mismatch",
        "differs",
    ),
    Case("conflict-webhook-id-reused", _webhook_id_reused, 409, "webhook_id_reused", "webhook-id"),
    Case(
        "conflict-webhook-id-reused-by-url",
        _webhook_id_reused_across_routes,
        409,
        "webhook_id_reused",
        "webhook-id",
    ),
    # /webhooks/chunk: URLs --------------------------------------------------------------------------------
    Case(
        "url-host-not-allowlisted",
        lambda w: w.fetch("m1", 1, "http://example.com/chunks/ok.wav"),
        403,
        "url_forbidden",
        "ALLOWLIST",
    ),
    Case(
        "url-allowlisted-host-other-path",
        lambda w: w.fetch("m1", 1, w.http_url("/private/ok.wav")),
        403,
        "url_forbidden",
        "ALLOWLIST",
    ),
    Case(
        "url-allowlisted-host-other-port",
        lambda w: w.fetch("m1", 1, f"http://127.0.0.1:{w.http_port + 1}/chunks/ok.wav"),
        403,
        "url_forbidden",
        "ALLOWLIST",
    ),
    Case(
        "url-allowlisted-host-https-vs-http",
        lambda w: w.fetch("m1", 1, f"https://127.0.0.1:{w.http_port}/chunks/ok.wav"),
        403,
        "url_forbidden",
        "ALLOWLIST",
    ),
    Case(
        "url-allowlist-prefix-as-subdomain",
        lambda w: w.fetch("m1", 1, "http://files.example.evil.test/ok.wav"),
        403,
        "url_forbidden",
        "ALLOWLIST",
    ),
    Case(
        "url-allowlist-prefix-as-userinfo",
        lambda w: w.fetch("m1", 1, f"http://files.example@127.0.0.1:{w.http_port}/private/ok.wav"),
        403,
        "url_forbidden",
        "ALLOWLIST",
    ),
    Case(
        "url-http-dot-dot-out-of-prefix",
        lambda w: w.fetch("m1", 1, w.http_url("/chunks/%2e%2e/private/ok.wav")),
        403,
        "url_forbidden",
        "ALLOWLIST",
    ),
    Case(
        "url-http-redirect-not-followed",
        lambda w: w.fetch("m1", 1, w.http_url("/chunks/sub")),
        502,
        "download_failed",
        "301",
    ),
    Case(
        "url-http-not-found",
        lambda w: w.fetch("m1", 1, w.http_url("/chunks/missing.wav")),
        502,
        "download_failed",
        "404",
    ),
    Case(
        "url-http-over-limit",
        lambda w: w.fetch("m1", 1, w.http_url("/chunks/big.wav")),
        413,
        "chunk_too_large",
        str(MAX_CHUNK_BYTES),
    ),
    Case(
        "url-file-without-ingest-root",
        lambda w: w.fetch("ghost", 0, w.file_url("ok.wav"), stack=w.b),
        403,
        "url_forbidden",
        "AUDIOFLOW_INGEST_ROOT",
    ),
    Case(
        "url-file-outside-root",
        lambda w: w.fetch("m1", 1, f"file://{w.outside}/outside.wav"),
        403,
        "url_forbidden",
        "outside",
    ),
    Case(
        "url-file-etc-passwd",
        lambda w: w.fetch("m1", 1, "file:///etc/passwd"),
        403,
        "url_forbidden",
        "outside",
    ),
    Case(
        "url-file-dot-dot",
        lambda w: w.fetch("m1", 1, w.file_url("../outside/outside.wav")),
        403,
        "url_forbidden",
        "outside",
    ),
    Case(
        "url-file-dot-dot-encoded",
        lambda w: w.fetch("m1", 1, w.file_url("%2e%2e/outside/outside.wav")),
        403,
        "url_forbidden",
        "outside",
    ),
    Case(
        "url-file-relative-dot-dot",
        lambda w: w.fetch("m1", 1, "file:../outside/outside.wav"),
        403,
        "url_forbidden",
        "outside",
    ),
    Case(
        "url-file-symlink-out",
        lambda w: w.fetch("m1", 1, w.file_url("escape.wav")),
        403,
        "url_forbidden",
        "outside",
    ),
    Case(
        "url-file-symlinked-dir-out",
        lambda w: w.fetch("m1", 1, w.file_url("escape-dir/outside.wav")),
        403,
        "url_forbidden",
        "outside",
    ),
    Case(
        "url-file-with-host",
        lambda w: w.fetch("m1", 1, f"file://evil.example{w.root}/ok.wav"),
        403,
        "url_forbidden",
        "host",
    ),
    Case(
        "url-file-symlink-loop",
        lambda w: w.fetch("m1", 1, w.file_url("loop.wav")),
        400,
        "url_not_found",
        "read",
    ),
    Case(
        "url-file-name-too-long",
        lambda w: w.fetch("m1", 1, w.file_url("a" * 300 + ".wav")),
        400,
        "url_not_found",
        "read",
    ),
    Case(
        "url-file-missing",
        lambda w: w.fetch("m1", 1, w.file_url("missing.wav")),
        400,
        "url_not_found",
        "file",
    ),
    Case(
        "url-file-directory",
        lambda w: w.fetch("m1", 1, w.file_url("sub")),
        400,
        "url_not_found",
        "regular file",
    ),
    Case("url-file-nul", lambda w: w.fetch("m1", 1, w.file_url("ok%00.wav")), 400, "invalid_url", "NUL"),
    Case("url-file-not-a-wav", lambda w: w.fetch("m1", 1, w.file_url("notwav.txt")), 400, "not_wav", "RIFF"),
    Case(
        "url-file-over-limit",
        lambda w: w.fetch("m1", 1, w.file_url("big.wav")),
        413,
        "chunk_too_large",
        "limit",
    ),
    Case(
        "url-file-8khz-for-m1",
        lambda w: w.fetch("m1", 1, w.file_url("8k.wav")),
        422,
        "format_mismatch",
        "8000",
    ),
    Case(
        "url-scheme-ftp", lambda w: w.fetch("m1", 1, "ftp://127.0.0.1/ok.wav"), 400, "unsupported_url", "ftp"
    ),
    Case(
        "url-scheme-gopher",
        lambda w: w.fetch("m1", 1, "gopher://127.0.0.1/ok"),
        400,
        "unsupported_url",
        "gopher",
    ),
    Case("url-scheme-none", lambda w: w.fetch("m1", 1, "/etc/passwd"), 400, "unsupported_url", "scheme"),
    Case("url-invalid-ipv6", lambda w: w.fetch("m1", 1, "http://[::1/ok.wav"), 400, "invalid_url", "IPv6"),
    # /webhooks/chunk: the JSON ----------------------------------------------------------------------------
    Case("json-not-json", lambda w: w.webhook(b"meetingId=m1&seq=1"), 400, "invalid_json", "JSON"),
    Case(
        "json-not-utf8",
        lambda w: w.webhook(b'{"meetingId": "\xff\xfe", "seq": 1}'),
        400,
        "invalid_json",
        "utf-8",
    ),
    Case("json-array", lambda w: w.webhook(b"[1, 2, 3]"), 400, "invalid_json", "JSON"),
    Case(
        "json-deeply-nested", lambda w: w.webhook(b"[" * 30_000 + b"]" * 30_000), 400, "invalid_json", "JSON"
    ),
    Case(
        "json-missing-url",
        lambda w: w.webhook({"meetingId": "m1", "seq": 1}),
        400,
        "invalid_json",
        "url: Field required",
    ),
    Case(
        "json-seq-not-integer",
        lambda w: w.webhook({"meetingId": "m1", "seq": "one", "url": "file:///x"}),
        400,
        "invalid_json",
        "seq",
    ),
    Case(
        "json-seq-as-string",
        lambda w: w.webhook({"meetingId": "m1", "seq": "5", "url": "file:///x"}),
        400,
        "invalid_json",
        "seq",
    ),
    Case(
        "json-meeting-id-129-chars",
        lambda w: w.fetch("m" * 129, 1, "file:///x"),
        400,
        "invalid_meeting_id",
        "1-128",
    ),
    Case(
        "json-bad-meeting-id",
        lambda w: w.fetch("..", 1, "file:///x"),
        400,
        "invalid_meeting_id",
        "meeting id",
    ),
    Case("json-negative-seq", lambda w: w.fetch("m1", -1, "file:///x"), 400, "invalid_seq", "seq"),
    Case(
        "json-body-over-64k",
        lambda w: w.webhook({"meetingId": "m1", "seq": 1, "url": "file:///x", "pad": "x" * 70_000}),
        413,
        "body_too_large",
        "limit",
    ),
    # /webhooks/chunk: the happy paths -------------------------------------------------------------------
    Case(
        "url-file-inside-root-accepted",
        lambda w: w.fetch("m-file", 0, w.file_url("ok.wav")),
        201,
        check=_received("m-file", chunk(10)),
    ),
    Case(
        "url-file-in-subfolder-via-dot-dot-inside-root-accepted",
        lambda w: w.fetch("m-file-sub", 0, w.file_url("sub/../sub/ok.wav")),
        201,
        check=_received("m-file-sub", chunk(11)),
    ),
    Case(
        "url-http-allowlisted-accepted",
        lambda w: w.fetch("m-http", 0, w.http_url("/chunks/ok.wav")),
        201,
        check=_received("m-http", chunk(20)),
    ),
    # reader API -------------------------------------------------------------------------------------------
    Case("read-no-token", lambda w: w.read("/v1/meetings/m1", anonymous=True), 401, "missing_token", "token"),
    Case(
        "read-wrong-token",
        lambda w: w.read("/v1/meetings/m1", token="wrong-token-0123456789"),
        401,
        "invalid_token",
        "token",
    ),
    Case(
        "read-wrong-query-token",
        lambda w: w.read("/v1/meetings/m1", anonymous=True, params={"token": "nope"}),
        401,
        "invalid_token",
        "token",
    ),
    # scopes: the read token (the one in the page's URLs) never creates, ends or deletes a meeting
    Case(
        "admin-read-token-cannot-delete",
        lambda w: _reply(w.a.client.delete("/v1/meetings/m1", headers=w.a.auth())),
        403,
        "read_only_token",
        "AUDIOFLOW_ADMIN_TOKEN",
    ),
    Case(
        "admin-read-token-in-url-cannot-delete",
        lambda w: _reply(w.a.client.delete("/v1/meetings/m1", params={"token": w.a.token})),
        401,
        "missing_token",
        "header",
    ),
    Case(
        "admin-token-in-url-is-not-accepted",
        lambda w: _reply(w.a.client.delete("/v1/meetings/m1", params={"token": w.a.admin_token})),
        401,
        "missing_token",
        "URL",
    ),
    Case(
        "admin-read-token-cannot-create",
        lambda w: _reply(w.a.client.post("/v1/meetings", json={"id": "m-read"}, headers=w.a.auth())),
        403,
        "read_only_token",
        "admin token",
    ),
    Case(
        "admin-read-token-cannot-end",
        lambda w: _reply(w.a.client.post("/v1/meetings/m1/end", headers=w.a.auth())),
        403,
        "read_only_token",
        "admin token",
    ),
    Case("read-unknown-meeting", lambda w: w.read("/v1/meetings/nobody"), 404, "meeting_not_found", "nobody"),
    Case(
        "read-invalid-meeting-id",
        lambda w: w.read("/v1/meetings/.hidden"),
        400,
        "invalid_meeting_id",
        "meeting id",
    ),
    Case("read-transcript-pdf", _m1_meeting("/transcript?format=pdf"), 422, "validation_error", "format"),
    Case(
        "read-transcript-unknown",
        lambda w: w.read("/v1/meetings/nobody/transcript"),
        404,
        "meeting_not_found",
        "nobody",
    ),
    Case("read-recording-not-yet", _m1_meeting("/recording.wav"), 404, "no_recording_yet", "recording"),
    Case("read-list-bad-limit", lambda w: w.read("/v1/meetings?limit=0"), 422, "validation_error", "limit"),
    Case(
        "read-list-huge-offset",
        lambda w: w.read("/v1/meetings?offset=99999999999999999999"),
        422,
        "validation_error",
        "offset",
    ),
    Case(
        "create-meeting-exists",
        lambda w: _reply(w.a.post("/v1/meetings", json={"id": "m1"})),
        409,
        "meeting_exists",
        "m1",
    ),
    Case(
        "create-meeting-bad-id",
        lambda w: _reply(w.a.post("/v1/meetings", json={"id": "../x"})),
        422,
        "validation_error",
        "id",
    ),
    Case(
        "create-meeting-bad-format",
        lambda w: _reply(w.a.post("/v1/meetings", json={"id": "m-bits", "format": {"bits": 12}})),
        422,
        "validation_error",
        "bits",
    ),
    Case("route-unknown", lambda w: w.read("/v2/nothing"), 404, "not_found", "Not Found"),
    # auto-create off (gateway b) --------------------------------------------------------------------------
    Case(
        "auto-create-off-unknown-meeting",
        lambda w: w.put("ghost", 0, GOOD, stack=w.b),
        404,
        "meeting_not_found",
        "auto-create",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input(world: World, case: Case) -> None:
    reply = case.send(world)
    assert reply.status != 500, reply.text
    assert reply.status == case.status, f"{case.id}: {reply.status} {reply.text}"
    if case.code is not None:
        assert reply.headers.get("content-type", "").startswith("application/json"), reply.headers
        error = reply.json()["error"]
        assert set(error) == {"code", "message"}
        assert error["code"] == case.code, error
        assert error["message"].strip(), error
        assert case.keyword.lower() in error["message"].lower(), error
    elif case.status >= 400:  # refused by uvicorn's HTTP parser before the application saw it
        assert case.keyword.lower() in reply.text.lower(), reply.text
    if case.check is not None:
        case.check(world, reply)
    assert_nothing_lost(world)


def test_case_ids_are_unique() -> None:
    assert len({case.id for case in CASES}) == len(CASES)


# WebSocket -----------------------------------------------------------------------------------------------


def _refusal(world: World, query: str, meeting_id: str = "m1") -> tuple[dict[str, Any], int | None]:
    url = f"ws://127.0.0.1:{world.a.port}/v1/meetings/{meeting_id}/events{query}"
    with connect(url, open_timeout=10) as ws:
        message = json.loads(ws.recv(timeout=10))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None
    return message, closed.value.rcvd.code


WS_CASES = [
    ("ws-no-token", "", "m1", 4401, "missing_token"),
    ("ws-bad-token", "?token=wrong", "m1", 4401, "invalid_token"),
    ("ws-bad-since", "?token={token}&since=yesterday", "m1", 4400, "invalid_since"),
    ("ws-since-injection", "?token={token}&since=%2B%20-", "m1", 4400, "invalid_since"),
    ("ws-since-past-redis-range", "?token={token}&since=99999999999999999999-0", "m1", 4400, "invalid_since"),
    (
        "ws-since-largest-id",
        "?token={token}&since=18446744073709551615-18446744073709551615",
        "m1",
        4400,
        "invalid_since",
    ),
    ("ws-unknown-meeting", "?token={token}", "nobody", 4404, "meeting_not_found"),
    ("ws-invalid-meeting-id", "?token={token}", ".hidden", 4400, "invalid_meeting_id"),
]


@pytest.mark.parametrize(
    ("query", "meeting_id", "close_code", "code"), [c[1:] for c in WS_CASES], ids=[c[0] for c in WS_CASES]
)
def test_websocket_refusals_send_the_error_then_close(
    world: World, query: str, meeting_id: str, close_code: int, code: str
) -> None:
    message, closed_with = _refusal(world, query.format(token=world.a.token), meeting_id)
    assert message["error"]["code"] == code
    assert message["error"]["message"].strip()
    assert closed_with == close_code
    assert_nothing_lost(world)


def test_websocket_with_good_token_replays_m1(world: World) -> None:
    url = f"ws://127.0.0.1:{world.a.port}/v1/meetings/m1/events?token={world.a.token}"
    with connect(url, open_timeout=10) as ws:
        first = json.loads(ws.recv(timeout=10))
    assert first["meeting_id"] == "m1"
    assert first["type"] in ("meeting.phase", "chunk.received")


def test_websocket_closes_1011_when_the_event_source_fails(world: World, redis_server_url: str) -> None:
    """Not bad input but a broken event stream (here: the key holds a string): the client is told to
    reconnect with a 1011 close, not dropped without a close frame."""
    created = world.put("m-broken-events", 0, chunk(40))
    assert created.status == 201, created.text
    client = redis.Redis.from_url(redis_server_url)
    try:
        client.set(Keys(world.a.env["AUDIOFLOW_REDIS_PREFIX"]).events("m-broken-events"), "not a stream")
    finally:
        client.close()
    url = f"ws://127.0.0.1:{world.a.port}/v1/meetings/m-broken-events/events?token={world.a.token}"
    with connect(url, open_timeout=10) as ws, pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=10)
    assert closed.value.rcvd is not None, "closed without a close frame"
    assert closed.value.rcvd.code == 1011
    assert "since" in closed.value.rcvd.reason
    assert_nothing_lost(world)


def test_a_gateway_without_a_secret_refuses_ingest(
    module_database_url: str, redis_server_url: str, tmp_path: Path
) -> None:
    prefix = services.redis_prefix()
    stack = make_stack(tmp_path, redis_server_url, module_database_url, prefix)
    stack.env.pop("AUDIOFLOW_WEBHOOK_SECRET")
    stack.client.event_hooks["response"].append(_never_500)
    try:
        stack.start_api()
        response = stack.put_chunk("m1", 5, GOOD)
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "ingest_disabled"
        assert "AUDIOFLOW_WEBHOOK_SECRET" in response.json()["error"]["message"]
    finally:
        stack.stop()
        services.delete_prefix(redis_server_url, prefix)


def test_no_500_in_the_gateway_logs(world: World) -> None:
    """Last per database: nothing in either gateway's log is an unhandled exception."""
    for stack in (world.a, world.b):
        for path in sorted(stack.workdir.glob("api-*.log")):
            log = path.read_text(errors="replace")
            assert "Traceback" not in log, log[-4000:]
            assert "Exception in ASGI application" not in log, log[-4000:]
