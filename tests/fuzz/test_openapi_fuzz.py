"""Schemathesis against the running gateway's own OpenAPI document: no 5xx, every answer as documented.

Every operation is fuzzed (examples, coverage and fuzzing phases; positive and negative data). Each
generated case is then steered, by a choice derived from the case itself so runs are reproducible: most
get the right bearer token or a Standard Webhooks signature over the exact bytes sent, a meeting id that
exists and a real WAV body, so they reach storage, the queue and the transcript; the rest keep what the
generator made, or get a wrong token or signature. The count of executed cases is asserted at the end.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import struct
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlencode, urlsplit

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from schemathesis import checks
from schemathesis.core import NotSet
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi import checks as openapi_checks
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect as ws_connect

from audioflow.api.app import create_app
from audioflow.api.schemas import ErrorEnvelope, EventPublic
from audioflow.core.settings import Settings
from audioflow.core.signing import chunk_target, generate_secret, sign
from tests.factories import fmt_body, riff, riff_chunk
from tests.fuzz.conftest import DEEP, LIVE, MAX_CHUNK_BYTES, PENDING, World

pytestmark = pytest.mark.integration

Case = schemathesis.Case[Any]  # the operation type is generic in 4 parameters of no use here

MIN_CASES = 1000  # per gateway (PostgreSQL, SQLite), not counting the 405 probes
FUZZ_EXAMPLES = 100  # per operation, in the fuzzing phase; the examples and coverage phases add more
CHECKS = [
    checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.response_headers_conformance,
]
CHUNK_PUT = "/v1/meetings/{meeting_id}/chunks/{seq}"
CHUNK_PATH = re.compile(r"/v1/meetings/(?P<meeting>[^/]+)/chunks/(?P<seq>[0-9]{1,18})")
WEBHOOK = "/webhooks/chunk"
WAV_TYPES = ("audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave")
# Meetings the fuzzer may create and delete; uploads also go to LIVE and PENDING, but never to DEEP, whose
# recording and phase must stay as they are.
SCRATCH = ("fz-0", "fz-1", "fz-2", "fz-3")
WRITABLE = (LIVE, PENDING, *SCRATCH)
READABLE = (DEEP, *WRITABLE)
# A third are past any fixture recording (416): only about 30 cases reach a recording, and the run must
# see every answer of the range code (see REACHED), whichever cases the generator makes this time.
RANGES = (
    "bytes=0-99", "bytes=-500", "bytes=100-", "bytes=0-0", "bytes=5-2", "bytes=-0",
    "bytes=999999999-", "bytes=50000000-", "bytes=999999999-1000000000",
)  # fmt: skip
REUSED_IDS = ("msg_fz_0", "msg_fz_1")
_LAST_UPLOAD: dict[str, tuple[dict[str, str], bytes]] = {}  # per database: the last signed chunk upload


# WAV bodies for ``audio/wav`` -------------------------------------------------------------------------


def pcm_wav(channels: int, rate: int, bits: int, data: bytes, extra: bytes = b"") -> bytes:
    """A RIFF/WAVE file built here, independently of the gateway's parser; ``extra`` chunks come first."""
    fmt = riff_chunk(b"fmt ", fmt_body(1, channels, rate, bits))
    return riff(extra, fmt, riff_chunk(b"data", data, pad=False))


@st.composite
def valid_wavs(draw: st.DrawFn) -> bytes:
    channels = draw(st.sampled_from([1, 1, 2, 3]))
    bits = draw(st.sampled_from([16, 16, 8, 24, 32]))
    rate = draw(st.sampled_from([16000, 16000, 8000, 44100, 192000]))
    frames = draw(st.integers(1, 400))
    data = draw(st.binary(min_size=frames * channels * bits // 8, max_size=frames * channels * bits // 8))
    extra = draw(st.sampled_from([b"", b"LIST\x04\x00\x00\x00INFO", b"JUNK\x03\x00\x00\x00abc\x00"]))
    return pcm_wav(channels, rate, bits, data, extra)


@st.composite
def broken_wavs(draw: st.DrawFn) -> bytes:
    good = draw(valid_wavs())
    how = draw(st.sampled_from(["truncate", "flip", "tag", "rate", "size"]))
    if how == "truncate":
        return good[: draw(st.integers(0, len(good) - 1))]
    if how == "flip":
        at = draw(st.integers(0, min(len(good), 60) - 1))
        return good[:at] + bytes([good[at] ^ draw(st.integers(1, 255))]) + good[at + 1 :]
    if how == "tag":
        return good[:20] + struct.pack("<H", draw(st.sampled_from([0, 3, 0xFFFE, 0x55]))) + good[22:]
    if how == "rate":
        return good[:24] + struct.pack("<I", draw(st.sampled_from([0, 1, 7999, 2**32 - 1]))) + good[28:]
    return good[:40] + struct.pack("<I", draw(st.sampled_from([0, 1, 2**31, 2**32 - 1]))) + good[44:]


OVERSIZE = pcm_wav(1, 16000, 16, bytes(MAX_CHUNK_BYTES))
WAV_BODIES = st.one_of(
    *[valid_wavs()] * 6, broken_wavs(), broken_wavs(), st.binary(max_size=64), st.just(OVERSIZE)
)
schemathesis.openapi.media_type("audio/wav", WAV_BODIES)


# Steering ------------------------------------------------------------------------------------------------


class Signer(requests.auth.AuthBase):
    """Standard Webhooks headers over the exact bytes ``requests`` is about to send (or a broken variant)."""

    def __init__(self, secret: str, mode: str, msg_id: str) -> None:
        self.secret, self.mode, self.msg_id = secret, mode, msg_id

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body or b""
        raw = body.encode() if isinstance(body, str) else body
        assert isinstance(raw, bytes)
        if self.mode == "missing":
            return request
        secret = generate_secret() if self.mode == "wrong_secret" else self.secret
        stamp = int(time.time()) - 3600 if self.mode == "stale" else None
        # A chunk upload signs where it lands too: its method and canonical path (seq without zeros).
        path = urlsplit(request.url or "").path
        chunk = CHUNK_PATH.fullmatch(unquote(path)) if request.method == "PUT" else None
        target = chunk_target(chunk["meeting"], int(chunk["seq"])) if chunk else None
        signed = sign(
            secret,
            raw + (b"!" if self.mode == "tampered" else b""),
            msg_id=self.msg_id,
            timestamp=stamp,
            target=target,
        )
        request.headers.update(signed.as_dict())
        return request


def digest(case: Case) -> bytes:
    """A stable fingerprint of what was generated: the same case is always steered the same way."""
    body = "(no body)" if isinstance(case.body, NotSet) else case.body  # NotSet's repr has an address
    parts = (case.method, case.path, case.path_parameters, case.query, dict(case.headers or {}), body)
    return hashlib.sha256(repr(parts).encode()).digest()


def negative(case: Case, location: ParameterLocation) -> bool:
    return case.meta is not None and case.meta.is_negative_at(location)


def steer(case: Case, world: World) -> dict[str, Any]:
    """Adjust ``case`` in place toward valid, deep requests; return extra ``call`` arguments."""
    rng = random.Random(digest(case))
    ingest = case.path in (CHUNK_PUT, WEBHOOK)
    if "meeting_id" in (case.path_parameters or {}) and not negative(case, ParameterLocation.PATH):
        case.path_parameters = {**case.path_parameters, **path_choice(case, rng)}
    if ingest:
        return ingest_kwargs(case, world, rng)
    if case.path.startswith("/v1/"):
        reader_auth(case, world, rng)
        if case.path.endswith("/recording.wav") and rng.random() < 0.8:
            case.headers["Range"] = rng.choice(RANGES)
        creating = case.path == "/v1/meetings" and case.method == "POST"
        if creating and rng.random() < 0.3 and not negative(case, ParameterLocation.BODY):
            case.body = {"id": rng.choice(SCRATCH)}
    return {}


def path_choice(case: Case, rng: random.Random) -> dict[str, str]:
    """Mostly a meeting that exists (``fz-deep`` for reads), and a small seq for uploads."""
    chosen = dict(case.path_parameters)
    if case.path == CHUNK_PUT or case.method == "DELETE":
        if rng.random() < 0.85:
            chosen["meeting_id"] = rng.choice(WRITABLE if case.path == CHUNK_PUT else SCRATCH)
        if chosen["meeting_id"] in (DEEP, LIVE, PENDING) and case.method == "DELETE":
            chosen["meeting_id"] = SCRATCH[0]
        if chosen["meeting_id"] == DEEP:
            chosen["meeting_id"] = LIVE
        if "seq" in chosen and rng.random() < 0.85:
            chosen["seq"] = str(rng.randrange(6))
    elif rng.random() < 0.75:
        # live.wav of fz-deep sends its whole recording and then waits for the next phase check (2 s).
        deep_share = 0.08 if case.path.endswith("/live.wav") else 0.5
        chosen["meeting_id"] = DEEP if rng.random() < deep_share else rng.choice(WRITABLE)
    return chosen


def reader_auth(case: Case, world: World, rng: random.Random) -> None:
    """Mostly the right token: the admin token for create, end and delete (sometimes the read token,
    which they refuse), the read token for the rest."""
    roll = rng.random()
    writing = case.method in ("POST", "DELETE")
    if writing and roll < 0.65:
        case.headers["Authorization"] = f"Bearer {world.stack.admin_token}"
    elif roll < 0.75:
        case.headers["Authorization"] = f"Bearer {world.stack.token}"
    elif roll < 0.85:
        case.headers.pop("Authorization", None)
        case.query = {**(case.query or {}), "token": world.stack.token}
    # otherwise: whatever was generated (mostly no or a wrong token)


def ingest_kwargs(case: Case, world: World, rng: random.Random) -> dict[str, Any]:
    if case.path == CHUNK_PUT and rng.random() < 0.85 and not negative(case, ParameterLocation.HEADER):
        case.headers["content-type"] = rng.choice(WAV_TYPES)
    if case.path == WEBHOOK and rng.random() < 0.7 and not negative(case, ParameterLocation.BODY):
        url = rng.choice(world.good_urls if rng.random() < 0.5 else world.good_urls + world.bad_urls)
        case.body = {"meetingId": rng.choice(WRITABLE), "seq": rng.randrange(6), "url": url}
    elif isinstance(case.body, dict) and case.body.get("meetingId") == DEEP:
        case.body = {**case.body, "meetingId": LIVE}
    roll = rng.random()
    broken = ("missing", "wrong_secret", "stale", "tampered")
    mode = "valid" if roll < 0.8 else broken[int((roll - 0.8) / 0.05)]
    if case.path == CHUNK_PUT and mode == "valid" and isinstance(case.body, bytes):
        # Now and then the previous signed upload again, to where it went: a duplicate when it was accepted
        # (generated bodies are random, so the same bytes for the same seq are otherwise left to chance).
        previous = _LAST_UPLOAD.get(world.database)
        if previous is not None and rng.random() < 0.15:
            case.path_parameters, case.body = dict(previous[0]), previous[1]
        _LAST_UPLOAD[world.database] = (dict(case.path_parameters or {}), case.body)
    msg_id = rng.choice(REUSED_IDS) if rng.random() < 0.1 else "msg_" + digest(case).hex()[:24]
    return {"auth": Signer(world.stack.secret, mode, msg_id)}


# The run -------------------------------------------------------------------------------------------------

# Answers that prove the steering reaches deep code: without them the run is not a proof, whatever it found.
REACHED = (
    (f"PUT {CHUNK_PUT}", "201"),
    (f"PUT {CHUNK_PUT}", "200"),  # a duplicate
    (f"PUT {CHUNK_PUT}", "409 chunk_conflict"),
    (f"POST {WEBHOOK}", "201"),
    ("POST /v1/meetings", "201"),
    ("GET /v1/meetings", "200"),
    ("GET /v1/meetings/{meeting_id}", "200"),
    ("DELETE /v1/meetings/{meeting_id}", "204"),
    ("POST /v1/meetings/{meeting_id}/end", "200"),
    ("GET /v1/meetings/{meeting_id}/transcript", "200"),
    ("GET /v1/meetings/{meeting_id}/recording.wav", "200"),
    ("GET /v1/meetings/{meeting_id}/recording.wav", "206"),
    ("GET /v1/meetings/{meeting_id}/recording.wav", "416 range_not_satisfiable"),
    ("GET /v1/meetings/{meeting_id}/live.wav", "200"),
)


@dataclass
class Tally:
    """What was executed: cases per operation, and answers per operation by status and error code.

    Requests with a method the operation does not have (the coverage phase's 405 probes) are counted
    apart: they are not cases of the operation.
    """

    cases: Counter[str] = field(default_factory=Counter)
    answers: Counter[tuple[str, str]] = field(default_factory=Counter)
    probes: int = 0

    @property
    def total(self) -> int:
        return sum(self.cases.values())

    def add(self, label: str, answer: str) -> None:
        self.cases[label] += 1
        self.answers[(label, answer)] += 1

    def report(self) -> str:
        lines = [f"{self.total} cases (and {self.probes} probes with undocumented methods)"]
        for label, count in sorted(self.cases.items()):
            lines.append(f"  {count:5d} {label}")
            lines += [f"        {n:5d} {a}" for (op, a), n in sorted(self.answers.items()) if op == label]
        return "\n".join(lines)


def answer(response: schemathesis.Response) -> str:
    """``"201"``, or ``"404 meeting_not_found"`` for an error envelope."""
    text = str(response.status_code)
    if response.status_code >= 400 and "json" in (response.headers.get("content-type") or [""])[0]:
        text += f" {response.json().get('error', {}).get('code')}"
    return text


@pytest.fixture(scope="module")
def tally(fuzz_world: World) -> Iterator[Tally]:
    """One per gateway: at its end, enough cases ran and every deep answer was reached."""
    executed = Tally()
    yield executed
    print(f"\nHTTP ({fuzz_world.database}): {executed.report()}")
    assert executed.total >= MIN_CASES, executed.report()
    missing = [pair for pair in REACHED if executed.answers[pair] == 0]
    assert not missing, f"never reached: {missing}\n{executed.report()}"


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as client:
        yield client


def _document() -> dict[str, Any]:
    return create_app(Settings(api_token=None, webhook_secret=None)).openapi()


# Loaded when pytest collects, so every operation is its own test item. (The lazy ``from_fixture`` loader
# of schemathesis 4.32 reads ``Node._nodeid``, which pytest 9.2 no longer has.) The fixture below proves
# that the running gateway serves this very document.
schema = schemathesis.openapi.from_dict(_document())
schema.config.update(request_timeout=30)  # a stream that never ends fails instead of hanging


@pytest.fixture(scope="module")
def served(fuzz_world: World, session: requests.Session) -> World:
    document = session.get(f"{fuzz_world.base_url}/openapi.json", timeout=10).json()
    assert document == _document(), "the gateway serves another OpenAPI document than the one fuzzed"
    return fuzz_world


FUZZ_SETTINGS = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)


@settings(FUZZ_SETTINGS, max_examples=FUZZ_EXAMPLES)
@schema.parametrize()
def test_gateway_answers_as_documented(
    case: Case, served: World, session: requests.Session, tally: Tally
) -> None:
    extra = steer(case, served)
    response = case.call(base_url=served.base_url, session=session, **extra)
    if case.method.upper() == case.operation.method.upper():
        tally.add(case.operation.label, answer(response))
    else:
        tally.probes += 1
    case.validate_response(response, checks=CHECKS, transport_kwargs={"base_url": served.base_url, **extra})


def test_a_failed_download_is_the_documented_502(served: World, session: requests.Session) -> None:
    """The one 5xx a healthy gateway gives: the URL's own server failed. The fuzzer names only URLs whose
    server answers, so this is checked here, against the document, with every check but the 5xx one."""
    body: dict[str, Any] = {
        "meetingId": SCRATCH[0],
        "seq": 99,
        "url": f"{served.files_url}/chunks/missing.wav",
    }
    case = schema[WEBHOOK]["POST"].Case(body=body, media_type="application/json")
    signer = Signer(served.stack.secret, "valid", "msg_fz_download")
    response = case.call(base_url=served.base_url, session=session, auth=signer)
    assert answer(response) == "502 download_failed", response.text
    case.validate_response(response, checks=CHECKS[1:])


# The WebSocket is not in the OpenAPI document (OpenAPI has no WebSockets): fuzzed here on its own. -------

WS_CASES = 60
SINCES = ("0", "0-0", "1-1", "$", "-1", "+", "99999999999999999999-0", "18446744073709551615-0")
WS_REACHED = (
    "event",
    "refused 400 invalid_since",
    "refused 401 missing_token",
    "refused 404 meeting_not_found",
)


@pytest.fixture(scope="module")
def ws_tally(fuzz_world: World) -> Iterator[Counter[str]]:
    outcomes: Counter[str] = Counter()
    yield outcomes
    print(f"\nWebSocket ({fuzz_world.database}): {dict(sorted(outcomes.items()))}")
    missing = [outcome for outcome in WS_REACHED if outcomes[outcome] == 0]
    assert sum(outcomes.values()) >= WS_CASES // 2 and not missing, (missing, outcomes)


def follow_events(world: World, meeting: str, since: str | None, auth: str) -> str:
    """Open the meeting's event socket and say what came back; anything like a server failure raises."""
    query = {"since": since} if since is not None else {}
    headers = {}
    if auth == "header":
        headers["Authorization"] = f"Bearer {world.stack.token}"
    elif auth in ("query", "wrong"):
        query["token"] = world.stack.token if auth == "query" else "not-the-token-at-all"
    url = f"ws://127.0.0.1:{world.stack.port}/v1/meetings/{quote(meeting, safe='')}/events?{urlencode(query)}"
    try:
        # Unbounded receive queue: a bounded one stops reading once full, and then the close handshake
        # waits for its timeout behind the unread replay.
        with ws_connect(
            url, additional_headers=headers, open_timeout=10, close_timeout=5, max_queue=None
        ) as ws:
            try:
                first = json.loads(ws.recv(timeout=1.0))
            except TimeoutError:
                return "quiet"  # caught up: nothing after ``since`` yet
            if "error" not in first:
                event = EventPublic.model_validate(first)
                assert event.meeting_id == meeting, first
                return "event"
            error = ErrorEnvelope.model_validate(first).error
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=5)
            frame = closed.value.rcvd
            assert frame is not None and 4400 <= frame.code < 4500 and frame.reason == error.code, frame
            return f"refused {frame.code - 4000} {error.code}"
    except InvalidStatus as exc:  # refused before the upgrade: no such route
        status = exc.response.status_code
        assert status < 500, exc
        return f"handshake {status}"


def ws_examples(test: Any) -> Any:
    """Every boundary ``since`` with valid credentials on fz-deep, as the coverage phase does for HTTP."""
    for since in (None, "", *SINCES):
        test = example(meeting=DEEP, since=since, auth="header")(test)
    return test


@settings(FUZZ_SETTINGS, max_examples=WS_CASES)
@given(
    meeting=st.one_of(st.sampled_from(READABLE), st.sampled_from(READABLE), st.text(max_size=40)),
    since=st.one_of(st.none(), st.sampled_from(SINCES), st.sampled_from(SINCES), st.text(max_size=30)),
    auth=st.sampled_from(["header", "header", "query", "query", "wrong", "none"]),
)
@ws_examples
def test_events_websocket_refuses_cleanly_or_streams(
    served: World, ws_tally: Counter[str], meeting: str, since: str | None, auth: str
) -> None:
    ws_tally[follow_events(served, meeting, since, auth)] += 1
