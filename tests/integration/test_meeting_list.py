"""The meeting list pushed over a WebSocket: at once, then on every change; a bad token is refused."""

from __future__ import annotations

import json

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.integration.stack import Stack


def _url(stack: Stack, token: str) -> str:
    return f"ws://127.0.0.1:{stack.port}/v1/meetings?token={token}"


def test_the_meeting_list_is_pushed_when_it_changes(gateway: Stack) -> None:
    assert gateway.post("/v1/meetings", json={"id": "first"}).status_code == 201
    with connect(_url(gateway, gateway.token)) as ws:
        now = json.loads(ws.recv(timeout=10))
        assert now["type"] == "meetings" and [m["id"] for m in now["meetings"]] == ["first"]
        assert now["meetings"][0] == gateway.meeting("first")  # the shape GET /v1/meetings/{id} has
        assert gateway.post("/v1/meetings", json={"id": "second"}).status_code == 201
        pushed = json.loads(ws.recv(timeout=10))
        assert sorted(m["id"] for m in pushed["meetings"]) == ["first", "second"]
        assert gateway.post("/v1/meetings/first/end").status_code == 200
        ended = json.loads(ws.recv(timeout=10))
        assert {m["id"]: m["phase"] for m in ended["meetings"]}["first"] != "pending"
    with connect(_url(gateway, "not-the-token")) as ws:
        assert json.loads(ws.recv(timeout=10))["error"]["code"] == "invalid_token"
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
        assert ws.close_code == 4401
