"""Health, readiness, metrics and the OpenAPI document; a dependency that goes away gives 503, not 500."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from tests import services
from tests.factories import tone_pcm, wav_bytes
from tests.integration.stack import Stack

CONTRACT_PATHS = {
    "/v1/meetings/{meeting_id}/chunks/{seq}",
    "/webhooks/chunk",
    "/v1/meetings",
    "/v1/meetings/{meeting_id}",
    "/v1/meetings/{meeting_id}/end",
    "/v1/meetings/{meeting_id}/transcript",
    "/v1/meetings/{meeting_id}/recording.wav",
    "/v1/meetings/{meeting_id}/live.wav",
    "/healthz",
    "/readyz",
    "/metrics",
}


def test_health_readiness_metrics_and_openapi(make: Callable[..., Stack]) -> None:
    gateway = make(AUDIOFLOW_API_DOCS="true")
    gateway.start_api()
    assert gateway.client.get("/healthz").json() == {"status": "ok"}
    ready = gateway.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {
        "redis": "ok",
        "database": "ok",
        "storage": "ok",
    }
    assert gateway.put_chunk("health", 0, wav_bytes(tone_pcm(0.5))).status_code == 201
    metrics = gateway.client.get("/metrics").text
    assert 'audioflow_chunks_ingested_total{result="created"} 1.0' in metrics
    assert "audioflow_ingest_bytes_total" in metrics
    paths = set(gateway.client.get("/openapi.json").json()["paths"])
    assert paths >= CONTRACT_PATHS, CONTRACT_PATHS - paths
    for page in ("/docs", "/redoc"):  # never served: their CDN scripts are refused by the CSP
        assert gateway.client.get(page).status_code == 404


def test_redis_down_gives_503_with_retry_after_and_loses_nothing(
    make: Callable[..., Stack], tmp_path: Path
) -> None:
    port = services.free_port()
    redis_dir = tmp_path / "redis"
    redis_dir.mkdir()
    server = services.start_redis(port, redis_dir, appendonly=True)
    stack = make(REDIS_URL=f"redis://127.0.0.1:{port}/0")
    stack.start_api()
    try:
        first = wav_bytes(tone_pcm(0.5, seed=1))
        assert stack.put_chunk("outage", 0, first).status_code == 201
        server.terminate()
        server.wait(10)

        ready = stack.client.get("/readyz")
        assert ready.status_code == 503 and ready.headers["retry-after"]
        assert ready.json()["checks"]["redis"].startswith("unreachable")
        second = wav_bytes(tone_pcm(0.5, seed=2))
        refused = stack.put_chunk("outage", 1, second)
        assert refused.status_code == 503, refused.text
        assert refused.headers["retry-after"] and refused.json()["error"]["code"] == "redis_unavailable"

        server = services.start_redis(port, redis_dir, appendonly=True)
        # The producer retries: the stored chunk is a duplicate now, and its work is enqueued at last.
        assert stack.put_chunk("outage", 1, second).status_code == 200
        assert stack.meeting("outage")["chunks_received"] == 2
        client = redis.Redis(port=port, decode_responses=True)
        queued: Any = client.xrange(stack.env["AUDIOFLOW_REDIS_PREFIX"] + "transcribe")
        client.close()
        assert sorted(fields["seq"] for _, fields in queued) == ["0", "1"]
        assert stack.client.get("/readyz").status_code == 200
    finally:
        server.terminate()
        server.wait(10)
