"""Request dependencies as named Annotated aliases.

They are ``async def`` although they never await: FastAPI runs a plain ``def`` dependency in its thread
pool, a hop per dependency per request for a few attribute reads.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from audioflow.api.context import AppContext
from audioflow.core.errors import Forbidden, Unauthorized
from audioflow.core.ids import check_meeting_id


async def get_context(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


Ctx = Annotated[AppContext, Depends(get_context)]

_bearer = HTTPBearer(auto_error=False)


def _matches(presented: str, expected: SecretStr | None) -> bool:
    return expected is not None and hmac.compare_digest(
        presented.encode(), expected.get_secret_value().encode()
    )


def check_token(ctx: AppContext, presented: str | None) -> None:
    """Read scope: ``AUDIOFLOW_API_TOKEN`` (or the admin token), compared in constant time."""
    settings = ctx.settings
    if settings.api_token is None and settings.admin_token is None:
        raise Unauthorized(
            "the reader API is closed: the server has no AUDIOFLOW_API_TOKEN", code="no_api_token"
        )
    if not presented:
        raise Unauthorized("missing bearer token (Authorization: Bearer … or ?token=…)", code="missing_token")
    # Both compared, so the time taken does not tell which token it was close to.
    read, admin = _matches(presented, settings.api_token), _matches(presented, settings.admin_token)
    if not (read or admin):
        raise Unauthorized("invalid bearer token", code="invalid_token")


def check_admin_token(ctx: AppContext, presented: str | None) -> None:
    """Admin scope (create, end, delete): ``AUDIOFLOW_ADMIN_TOKEN`` only, never the read token."""
    settings = ctx.settings
    if not presented:
        raise Unauthorized(
            "creating, ending and deleting meetings need the admin token in the Authorization header "
            "(Authorization: Bearer …); a token in the URL is not accepted for them",
            code="missing_token",
        )
    read, admin = _matches(presented, settings.api_token), _matches(presented, settings.admin_token)
    if admin:
        return
    if settings.admin_token is None:
        raise Forbidden(
            "creating, ending and deleting meetings are disabled: the server has no AUDIOFLOW_ADMIN_TOKEN",
            code="admin_disabled",
        )
    if read:
        raise Forbidden(
            "this is the read token: creating, ending and deleting meetings need the admin token "
            "(AUDIOFLOW_ADMIN_TOKEN)",
            code="read_only_token",
        )
    raise Unauthorized("invalid bearer token", code="invalid_token")


async def reader_auth(
    ctx: Ctx,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    token: Annotated[
        str | None, Query(description="Token for clients that cannot set headers (audio, WebSocket)")
    ] = None,
) -> None:
    check_token(ctx, credentials.credentials if credentials else token)


ReaderAuth = Depends(reader_auth)


async def admin_auth(
    ctx: Ctx, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    check_admin_token(ctx, credentials.credentials if credentials else None)


AdminAuth = Depends(admin_auth)


async def meeting_id_path(meeting_id: str) -> str:
    return check_meeting_id(meeting_id)


MeetingId = Annotated[str, Depends(meeting_id_path)]
