"""The ingest fast path (``api/ingest_fast_path.py``) answers exactly as the FastAPI routes it stands in
front of: the same requests (new, duplicate, conflict, refusals of every kind, both routes) sent to a
gateway with the fast path and to one without it get the same statuses, bodies and Retry-After."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from fastapi.testclient import TestClient

from audioflow.api import app as app_module
from audioflow.api.ingest_fast_path import IngestFastPath
from audioflow.api.routes import ingest as ingest_routes
from audioflow.core.db.migrate import upgrade
from audioflow.core.settings import Settings
from audioflow.core.signing import generate_secret, sign, sign_chunk
from tests.factories import tone_pcm, wav_bytes

CHUNK = wav_bytes(tone_pcm(0.25))
OTHER = wav_bytes(tone_pcm(0.25, freq=660.0))
WAV = {"content-type": "audio/wav"}


def _requests(client: TestClient, secret: str, ingest_root: Path) -> list[tuple[int, Any, str | None]]:
    def put(meeting_id: str, seq: str, body: bytes, headers: dict[str, str] | None = None) -> Any:
        signed = sign_chunk(secret, meeting_id, seq, body).as_dict()
        return client.put(
            f"/v1/meetings/{meeting_id}/chunks/{seq}", content=body, headers=headers or {**WAV, **signed}
        )

    def webhook(payload: bytes) -> Any:
        signed = sign(secret, payload).as_dict()
        return client.post(
            "/webhooks/chunk", content=payload, headers={"content-type": "application/json", **signed}
        )

    (ingest_root / "c.wav").write_bytes(CHUNK)
    url = (ingest_root / "c.wav").as_uri()
    answers = [
        put("m", "0", CHUNK),  # new
        put("m", "0", CHUNK),  # duplicate
        put("m", "1", CHUNK),  # a later chunk: the group commit's case
        put("m", "1", OTHER),  # conflict
        put("m", "2", CHUNK, {"content-type": "text/plain", **sign_chunk(secret, "m", 2, CHUNK).as_dict()}),
        put("m", "2", CHUNK, {**WAV, **sign_chunk(secret, "m", 3, CHUNK).as_dict()}),  # signed for seq 3
        put("m", "two", CHUNK),  # not a seq
        put("a/b", "3", CHUNK),  # not a meeting id
        put("m", "999999", CHUNK),  # too far ahead
        put("m", "2", b"RIFF not a wav"),
        webhook(b"{not json"),
        webhook(json.dumps({"meetingId": "w", "seq": 0}).encode()),
        webhook(json.dumps({"meetingId": "w", "seq": 0, "url": url}).encode()),
        webhook(json.dumps({"meetingId": "w", "seq": 1, "url": "file:///etc/passwd"}).encode()),
        webhook(json.dumps({"meetingId": "w", "seq": 1, "url": url}).encode()),
    ]
    return [(a.status_code, a.json(), a.headers.get("retry-after")) for a in answers]


@pytest.fixture
def gateway(
    tmp_path: Path, redis_server_url: str, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[bool], list[tuple[int, Any, str | None]]]]:
    def run(fast_path: bool) -> list[tuple[int, Any, str | None]]:
        root = tmp_path / ("fast" if fast_path else "routes")
        ingest = tmp_path / "ingest"  # one for both, so refusals that name it read the same
        ingest.mkdir(exist_ok=True)
        root.mkdir()
        database_url = f"sqlite:///{root / 'audioflow.db'}"
        upgrade(database_url)
        secret = generate_secret()
        settings = Settings(
            database_url=database_url,
            redis_url=redis_server_url,
            redis_prefix=f"{redis_prefix}{int(fast_path)}:",
            data_dir=root / "data",
            webhook_secret=secret,
            ingest_root=ingest,
            fsync=False,
        )
        application = app_module.create_app(settings)
        if not fast_path:
            application.user_middleware = [
                m for m in application.user_middleware if cast(object, m.cls) is not IngestFastPath
            ]
        with TestClient(application) as client:
            return _requests(client, secret, ingest)

    yield run


def test_the_fast_path_answers_as_the_routes_do(
    gateway: Callable[[bool], list[tuple[int, Any, str | None]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    through_routes: list[object] = []
    respond = ingest_routes._respond

    def counted(*args: Any) -> Any:
        through_routes.append(args)
        return respond(*args)

    monkeypatch.setattr(ingest_routes, "_respond", counted)
    fast = gateway(True)
    assert through_routes == []  # the routes were not reached
    routes = gateway(False)
    assert len(through_routes) == 5  # new, duplicate, later, two webhooks
    assert fast == routes
    statuses = [status for status, _, _ in fast]
    assert statuses[:4] == [201, 200, 201, 409]
    assert statuses[12] == 201 and statuses[14] == 201
    assert all(400 <= s < 500 for s in statuses[4:12] + statuses[13:14])
