"""Request dependencies as named Annotated aliases."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Query, Request, WebSocket
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from audioflow.api.context import AppContext
from audioflow.core.errors import Unauthorized
from audioflow.core.ids import check_meeting_id


def get_context(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


Ctx = Annotated[AppContext, Depends(get_context)]

_bearer = HTTPBearer(auto_error=False)


def check_token(ctx: AppContext, presented: str | None) -> None:
    """Constant-time comparison against ``AUDIOFLOW_API_TOKEN``."""
    expected = ctx.settings.api_token
    if expected is None:
        raise Unauthorized(
            "the reader API is closed: the server has no AUDIOFLOW_API_TOKEN", code="no_api_token"
        )
    if not presented:
        raise Unauthorized("missing bearer token (Authorization: Bearer … or ?token=…)", code="missing_token")
    if not hmac.compare_digest(presented.encode(), expected.get_secret_value().encode()):
        raise Unauthorized("invalid bearer token", code="invalid_token")


def reader_auth(
    ctx: Ctx,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    token: Annotated[
        str | None, Query(description="Token for clients that cannot set headers (audio, WebSocket)")
    ] = None,
) -> None:
    check_token(ctx, credentials.credentials if credentials else token)


ReaderAuth = Depends(reader_auth)


def meeting_id_path(meeting_id: str) -> str:
    return check_meeting_id(meeting_id)


MeetingId = Annotated[str, Depends(meeting_id_path)]


def websocket_context(websocket: WebSocket) -> AppContext:
    ctx: AppContext = websocket.app.state.ctx
    return ctx
