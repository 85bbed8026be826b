"""Security at the gateway: CORS only for configured origins, security headers on every answer, the token
on every reader URL, and no credential in any log line of any process."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import httpx
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from audioflow.core.signing import sign
from tests import services
from tests.factories import tone_pcm, wav_bytes
from tests.integration.stack import Stack

TRUSTED = "https://meet.example"
EVIL = "https://evil.example"

READER_URLS = [
    "/v1/meetings",
    "/v1/meetings/sec",
    "/v1/meetings/sec/transcript",
    "/v1/meetings/sec/transcript?format=txt",
    "/v1/meetings/sec/recording.wav",
    "/v1/meetings/sec/live.wav",
]


def _preflight(stack: Stack, origin: str) -> tuple[int, dict[str, str]]:
    response = stack.client.options(
        "/v1/meetings",
        headers={
            "origin": origin,
            "access-control-request-method": "GET",
            "access-control-request-headers": "authorization",
        },
    )
    return response.status_code, dict(response.headers)


def test_cors_answers_only_the_configured_origins(make: Callable[..., Stack]) -> None:
    stack = make(AUDIOFLOW_CORS_ORIGINS=f"{TRUSTED}, https://other.example")
    stack.start_api()
    status, headers = _preflight(stack, TRUSTED)
    assert status == 200 and headers["access-control-allow-origin"] == TRUSTED
    assert "authorization" in headers["access-control-allow-headers"].lower()
    status, headers = _preflight(stack, EVIL)
    assert status == 400 and "access-control-allow-origin" not in headers
    for origin, allowed in ((TRUSTED, True), (EVIL, False)):
        response = stack.get("/v1/meetings", headers={"origin": origin})
        assert response.status_code == 200
        assert ("access-control-allow-origin" in response.headers) is allowed, response.headers


def test_without_configured_origins_no_browser_origin_is_allowed(gateway: Stack) -> None:
    status, headers = _preflight(gateway, TRUSTED)
    assert "access-control-allow-origin" not in headers and status in (400, 401, 405)
    response = gateway.get("/v1/meetings", headers={"origin": TRUSTED})
    assert response.status_code == 200 and "access-control-allow-origin" not in response.headers


def test_security_headers_on_every_answer(gateway: Stack) -> None:
    answers = {
        "health": gateway.client.get("/healthz"),
        "reader": gateway.get("/v1/meetings"),
        "unauthorised": gateway.client.get("/v1/meetings"),
        "not found": gateway.client.get("/nowhere"),
        "guard refusal": gateway.post("/v1/meetings", content=b"{" + b" " * 70_000 + b"}"),
        "openapi": gateway.client.get("/openapi.json"),
    }
    assert answers["guard refusal"].status_code == 413
    for what, response in answers.items():
        csp = response.headers.get("content-security-policy", "")
        assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp, (what, response.headers)
        assert response.headers["x-content-type-options"] == "nosniff", what
        assert response.headers["x-frame-options"] == "DENY", what
        assert response.headers["referrer-policy"] == "no-referrer", what


def test_every_reader_url_needs_the_token(gateway: Stack) -> None:
    assert gateway.put_chunk("sec", 0, wav_bytes(tone_pcm(0.5))).status_code == 201
    for path in READER_URLS:
        for headers in ({}, {"authorization": "Bearer wrong-token-wrong-token"}):
            response = gateway.client.get(path, headers=headers)
            assert response.status_code == 401, (path, headers, response.text)
            assert response.json()["error"]["code"] in ("missing_token", "invalid_token")
        assert gateway.client.get(path + ("&" if "?" in path else "?") + "token=wrong").status_code == 401


def test_no_credential_in_any_log_line(make: Callable[..., Stack]) -> None:
    stack = make(AUDIOFLOW_LOG_LEVEL="DEBUG")
    stack.start_api()
    stack.start_worker("processing")
    stack.start_worker("concat")
    body = wav_bytes(tone_pcm(1.0))
    assert stack.send("leak", 0, body) == 201
    # Every way a credential travels: header, query (audio and WebSocket), a wrong one, a bad signature.
    assert stack.get("/v1/meetings/leak").status_code == 200
    assert stack.client.get(f"/v1/meetings/leak/transcript?token={stack.token}").status_code == 200
    assert (
        stack.client.get("/v1/meetings/leak", headers={"authorization": "Bearer not-the-token"}).status_code
        == 401
    )
    forged = {"content-type": "audio/wav", **sign(stack.secret, b"other").as_dict()}
    assert stack.client.put("/v1/meetings/leak/chunks/1", content=body, headers=forged).status_code == 401
    with connect(f"ws://127.0.0.1:{stack.port}/v1/meetings/leak/events?token={stack.token}") as ws:
        ws.recv(timeout=10)
    with (
        contextlib.suppress(InvalidStatus),
        connect(f"ws://127.0.0.1:{stack.port}/v1/meetings/leak/events?token=not-the-token") as ws,
    ):
        ws.recv(timeout=10)
    assert stack.post("/v1/meetings/leak/end").status_code == 200
    stack.wait_completed("leak")
    stack.stop()
    logs = "\n".join(path.read_text(errors="replace") for path in sorted(stack.workdir.glob("*.log")))
    assert "WebSocket /v1/meetings/leak/events?token=***" in logs  # the line exists, redacted
    secret_key = stack.secret.removeprefix("whsec_")
    for credential in (stack.token, stack.admin_token, secret_key, "not-the-token"):
        assert credential not in logs, f"a credential reached the logs:\n{logs}"


def test_api_docs_are_off_by_default_and_metrics_can_have_a_port_of_their_own(
    make: Callable[..., Stack],
) -> None:
    """Issue 13, row 14: /docs, /redoc, /openapi.json and /metrics answered anyone, and /docs was a blank
    page (its CDN scripts are refused by the CSP). Swagger UI and ReDoc are never served, the OpenAPI
    document only with AUDIOFLOW_API_DOCS (test_health), and /metrics moves to AUDIOFLOW_METRICS_PORT
    when that is set."""
    metrics_port = services.free_port()
    gateway = make(AUDIOFLOW_METRICS_PORT=str(metrics_port))
    gateway.start_api()
    for path in ("/docs", "/redoc", "/openapi.json", "/metrics"):
        answer = gateway.client.get(path)
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found", (
            path,
            answer.text,
        )
    scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10)
    assert scraped.status_code == 200 and "audioflow_chunks_ingested_total" in scraped.text
