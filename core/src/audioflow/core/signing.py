"""Standard Webhooks signing and verification.

The signed content is ``"{webhook-id}.{webhook-timestamp}.{body}"``; the signature header is a
space-separated list of ``v1,<base64 HMAC-SHA256>``; the secret is ``whsec_`` + base64 key bytes.

A chunk upload (``PUT /v1/meetings/{id}/chunks/{seq}``) also signs where it lands, so a captured body
cannot be replayed onto another meeting or seq: its signed content is
``"{webhook-id}.{webhook-timestamp}.PUT /v1/meetings/{id}/chunks/{seq}.{body}"`` (:func:`chunk_target`,
the seq in decimal without leading zeros). JSON webhooks carry the meeting and seq in their body.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypedDict, Unpack

from audioflow.core.api_paths import chunk_path
from audioflow.core.errors import SignatureError

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
DEFAULT_TOLERANCE_S = 300


@functools.lru_cache(maxsize=8)
def decode_secret(secret: str) -> bytes:
    """The key bytes of a ``whsec_`` secret; ValueError names what is wrong. Cached: a server verifies
    every delivery with the same one or two secrets."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("webhook secret must start with 'whsec_'")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("webhook secret after 'whsec_' must be base64") from None
    if len(key) < 16:
        raise ValueError("webhook secret key must be at least 16 bytes")
    return key


def generate_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def chunk_target(meeting_id: str, seq: int | str) -> str:
    """What a chunk upload signs besides its body: its method and canonical path."""
    return f"PUT {chunk_path(meeting_id, seq)}"


def _signature(key: bytes, msg_id: str, timestamp: int, body: bytes | memoryview, target: str | None) -> str:
    prefix = f"{msg_id}.{timestamp}." if target is None else f"{msg_id}.{timestamp}.{target}."
    mac = hmac.new(key, prefix.encode(), hashlib.sha256)
    mac.update(body)  # no copy of a body that may be a large mapped file
    return base64.b64encode(mac.digest()).decode()


@dataclass(frozen=True)
class SignedHeaders:
    webhook_id: str
    timestamp: int
    signature: str

    def as_dict(self) -> dict[str, str]:
        return {
            "webhook-id": self.webhook_id,
            "webhook-timestamp": str(self.timestamp),
            "webhook-signature": self.signature,
        }


def sign(
    secret: str,
    body: bytes,
    *,
    msg_id: str | None = None,
    timestamp: int | None = None,
    target: str | None = None,
) -> SignedHeaders:
    """Headers that make ``body`` a signed Standard Webhooks delivery (to ``target``, see
    :func:`chunk_target`, for a chunk upload)."""
    msg_id = msg_id or "msg_" + secrets.token_hex(12)
    timestamp = int(time.time()) if timestamp is None else timestamp
    sig = _signature(decode_secret(secret), msg_id, timestamp, body, target)
    return SignedHeaders(msg_id, timestamp, f"v1,{sig}")


def sign_chunk(
    secret: str, meeting_id: str, seq: int | str, body: bytes, *, msg_id: str | None = None
) -> SignedHeaders:
    """Headers for ``PUT /v1/meetings/{meeting_id}/chunks/{seq}`` with ``body``."""
    return sign(secret, body, msg_id=msg_id, target=chunk_target(meeting_id, seq))


@dataclass(frozen=True)
class PresentedSignature:
    webhook_id: str
    timestamp: int
    signatures: str


def check_headers(
    headers: Mapping[str, str], *, now: float | None = None, tolerance_s: int = DEFAULT_TOLERANCE_S
) -> PresentedSignature:
    """Everything about a delivery's signature that can be checked before its body arrives: the headers
    are present and well formed, and the timestamp is within the tolerance."""
    msg_id = headers.get("webhook-id")
    raw_ts = headers.get("webhook-timestamp")
    raw_sig = headers.get("webhook-signature")
    if not msg_id or not raw_ts or not raw_sig:
        missing = [
            name
            for name, value in (
                ("webhook-id", msg_id),
                ("webhook-timestamp", raw_ts),
                ("webhook-signature", raw_sig),
            )
            if not value
        ]
        raise SignatureError(f"missing signature header(s): {', '.join(missing)}", code="missing_signature")
    if len(msg_id) > 256:
        raise SignatureError("webhook-id is longer than 256 characters", code="bad_signature")
    try:
        # Bounded length: a timestamp of hundreds of digits would overflow the float arithmetic below.
        timestamp = int(raw_ts) if len(raw_ts) <= 18 else None
    except ValueError:
        timestamp = None
    if timestamp is None:
        raise SignatureError("webhook-timestamp is not an integer (seconds)", code="bad_timestamp")
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance_s:
        raise SignatureError(
            f"webhook-timestamp is {int(now - timestamp)} s away from now (tolerance {tolerance_s} s)",
            code="stale_timestamp",
        )
    return PresentedSignature(msg_id, timestamp, raw_sig)


def verified(
    secret: str,
    headers: Mapping[str, str],
    body: bytes | memoryview,
    *,
    target: str | None = None,
    now: float | None = None,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
) -> PresentedSignature:
    """Check a delivery's signature (over ``target`` too, when given) and timestamp."""
    presented = check_headers(headers, now=now, tolerance_s=tolerance_s)
    expected = _signature(decode_secret(secret), presented.webhook_id, presented.timestamp, body, target)
    for candidate in presented.signatures.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected.encode()):
            return presented
    what = f"{target} and the body" if target else "the body"
    raise SignatureError(f"webhook-signature does not match {what}", code="bad_signature")


class VerifyOptions(TypedDict, total=False):
    """The keyword options of :func:`verified` (its defaults apply to those left out)."""

    target: str | None
    now: float | None
    tolerance_s: int


def verify(
    secret: str, headers: Mapping[str, str], body: bytes | memoryview, **options: Unpack[VerifyOptions]
) -> str:
    """:func:`verified`, returning the ``webhook-id`` (the idempotency key)."""
    return verified(secret, headers, body, **options).webhook_id
