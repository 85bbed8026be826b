"""Credentials are compared in constant time: the bearer token and the webhook signature both go
through ``hmac.compare_digest`` (a recording wrapper, a test double, shows each comparison)."""

from __future__ import annotations

import hmac
from types import SimpleNamespace
from typing import Any, cast

import pytest
from pydantic import SecretStr, ValidationError

from audioflow.api.deps import check_admin_token, check_token
from audioflow.core.errors import Forbidden, SignatureError, Unauthorized
from audioflow.core.settings import Settings
from audioflow.core.signing import generate_secret, sign, verify

TOKEN = "a-reader-token-of-some-length"
ADMIN = "an-admin-token-of-some-length"


@pytest.fixture
def comparisons(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bytes, bytes]]:
    seen: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def recording(a: Any, b: Any) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", recording)
    return seen


def _ctx(token: str | None, admin: str | None = None) -> Any:
    settings = SimpleNamespace(
        api_token=SecretStr(token) if token else None, admin_token=SecretStr(admin) if admin else None
    )
    return cast(Any, SimpleNamespace(settings=settings))


def test_the_read_token_never_authorizes_a_write() -> None:
    """Issue 13, row 13: the read token (in the page's audio and WebSocket URLs) deleted a meeting.
    Creating, ending and deleting take the admin token, which also reads."""
    ctx = _ctx(TOKEN, ADMIN)
    check_token(ctx, TOKEN)
    check_token(ctx, ADMIN)
    check_admin_token(ctx, ADMIN)
    with pytest.raises(Forbidden) as refused:
        check_admin_token(ctx, TOKEN)
    assert refused.value.code == "read_only_token"
    with pytest.raises(Unauthorized) as missing:
        check_admin_token(ctx, None)
    assert missing.value.code == "missing_token"
    with pytest.raises(Forbidden) as closed:  # no admin token configured: writes are closed, not open
        check_admin_token(_ctx(TOKEN), TOKEN)
    assert closed.value.code == "admin_disabled"
    with pytest.raises(ValidationError, match="must differ"):
        Settings(api_token=TOKEN, admin_token=TOKEN)


def test_the_bearer_token_is_compared_in_constant_time(comparisons: list[tuple[bytes, bytes]]) -> None:
    check_token(_ctx(TOKEN), TOKEN)
    with pytest.raises(Unauthorized) as refused:
        check_token(_ctx(TOKEN), TOKEN[:-1] + "X")
    assert refused.value.code == "invalid_token"
    assert comparisons == [(TOKEN.encode(), TOKEN.encode()), ((TOKEN[:-1] + "X").encode(), TOKEN.encode())]


def test_the_webhook_signature_is_compared_in_constant_time(comparisons: list[tuple[bytes, bytes]]) -> None:
    secret = generate_secret()
    headers = sign(secret, b"body").as_dict()
    verify(secret, headers, b"body")
    assert len(comparisons) == 1
    with pytest.raises(SignatureError):
        verify(secret, headers, b"other body")
    assert len(comparisons) == 2 and comparisons[1][0] != comparisons[1][1]
