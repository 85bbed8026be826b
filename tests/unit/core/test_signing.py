"""Standard Webhooks signing and verification (audioflow.core.signing)."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from audioflow.core.errors import SignatureError
from audioflow.core.signing import (
    DEFAULT_TOLERANCE_S,
    chunk_target,
    decode_secret,
    generate_secret,
    sign,
    sign_chunk,
    verify,
)

KEY = bytes(range(32))
SECRET = "whsec_" + base64.b64encode(KEY).decode()
OTHER_SECRET = "whsec_" + base64.b64encode(bytes(range(1, 33))).decode()
MSG_ID = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
NOW = 1_700_000_000
BODY = b'{"meetingId": "m1", "seq": 0, "url": "file:///chunks/0.wav"}'


def reference_signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """Computed here from the Standard Webhooks definition, not by the code under test."""
    signed = msg_id.encode() + b"." + str(timestamp).encode() + b"." + body
    return base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def headers(signature: str, *, msg_id: str = MSG_ID, timestamp: int | str = NOW) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}


def test_known_vector() -> None:
    expected = reference_signature(KEY, MSG_ID, NOW, BODY)
    signed = sign(SECRET, BODY, msg_id=MSG_ID, timestamp=NOW)
    assert signed.as_dict() == headers(f"v1,{expected}")
    assert verify(SECRET, headers(f"v1,{expected}"), BODY, now=NOW) == MSG_ID


def test_known_vector_from_the_standard_webhooks_reference() -> None:
    # The example from the Standard Webhooks specification's reference libraries.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    msg_id, timestamp = "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330
    body = b'{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert sign(secret, body, msg_id=msg_id, timestamp=timestamp).signature == expected
    assert (
        verify(secret, headers(expected, msg_id=msg_id, timestamp=timestamp), body, now=timestamp) == msg_id
    )


def test_round_trip_with_generated_secret_and_defaults() -> None:
    secret = generate_secret()
    assert secret.startswith("whsec_") and len(decode_secret(secret)) == 32
    signed = sign(secret, b"body")
    assert signed.webhook_id.startswith("msg_")
    assert signed.signature.startswith("v1,")
    assert verify(secret, signed.as_dict(), b"body") == signed.webhook_id
    assert sign(secret, b"body").webhook_id != signed.webhook_id  # a fresh id per delivery


def test_signs_the_raw_body_bytes() -> None:
    body = bytes(range(256))  # not UTF-8: the signature covers bytes, not text
    signed = sign(SECRET, body, msg_id=MSG_ID, timestamp=NOW)
    assert signed.signature == "v1," + reference_signature(KEY, MSG_ID, NOW, body)
    assert verify(SECRET, signed.as_dict(), body, now=NOW) == MSG_ID


def test_a_chunk_signature_covers_the_meeting_and_seq_it_lands_on() -> None:
    """A chunk upload signs ``{id}.{timestamp}.PUT {path}.{body}``: replayed onto another meeting or seq,
    or checked as a body-only signature, it does not verify."""
    wav = b"RIFF....WAVE"
    signed = sign_chunk(SECRET, "m1", 7, wav, msg_id=MSG_ID).as_dict()
    timestamp = int(signed["webhook-timestamp"])
    content = b"PUT /v1/meetings/m1/chunks/7." + wav
    assert signed["webhook-signature"] == "v1," + reference_signature(KEY, MSG_ID, timestamp, content)
    assert verify(SECRET, signed, wav, target=chunk_target("m1", 7)) == MSG_ID
    for target in (chunk_target("victim", 7), chunk_target("m1", 8), None):
        with pytest.raises(SignatureError) as refused:
            verify(SECRET, signed, wav, target=target)
        assert refused.value.code == "bad_signature"
    body_only = sign(SECRET, wav).as_dict()
    with pytest.raises(SignatureError, match="PUT /v1/meetings/m1/chunks/7"):
        verify(SECRET, body_only, wav, target=chunk_target("m1", 7))


VALID = reference_signature(KEY, MSG_ID, NOW, BODY)
WRONG = reference_signature(bytes(32), MSG_ID, NOW, BODY)


@pytest.mark.parametrize(
    "signature",
    [
        f"v1,{VALID}",
        f"v1,{WRONG} v1,{VALID}",
        f"v1,{VALID} v1,{WRONG}",
        f"v1a,{VALID} v1,{VALID}",
        f"v2,{WRONG} v1,{VALID}",
        f"v1,{WRONG}  v1,{VALID}",  # several spaces
        f"v1,{VALID}\tv1,{WRONG}",  # any whitespace separates
    ],
    ids=["one", "valid-second", "valid-first", "unknown-version-then-valid", "v2-ignored", "spaces", "tab"],
)
def test_any_valid_v1_signature_in_the_list_is_enough(signature: str) -> None:
    assert verify(SECRET, headers(signature), BODY, now=NOW) == MSG_ID


def test_header_names_are_looked_up_as_given() -> None:
    # Callers pass a case-insensitive mapping (Starlette headers); a plain dict must use lower case.
    upper = {k.upper(): v for k, v in headers(f"v1,{VALID}").items()}
    with pytest.raises(SignatureError) as caught:
        verify(SECRET, upper, BODY, now=NOW)
    assert caught.value.code == "missing_signature"


FAILURES: list[tuple[str, dict[str, str], bytes, str, str]] = [
    ("missing-all", {}, BODY, "missing_signature", "webhook-id"),
    (
        "missing-id",
        {k: v for k, v in headers(f"v1,{VALID}").items() if k != "webhook-id"},
        BODY,
        "missing_signature",
        "webhook-id",
    ),
    (
        "missing-timestamp",
        {k: v for k, v in headers(f"v1,{VALID}").items() if k != "webhook-timestamp"},
        BODY,
        "missing_signature",
        "webhook-timestamp",
    ),
    (
        "missing-signature",
        {k: v for k, v in headers(f"v1,{VALID}").items() if k != "webhook-signature"},
        BODY,
        "missing_signature",
        "webhook-signature",
    ),
    ("empty-signature", headers(""), BODY, "missing_signature", "webhook-signature"),
    ("empty-id", headers(f"v1,{VALID}", msg_id=""), BODY, "missing_signature", "webhook-id"),
    ("id-too-long", headers(f"v1,{VALID}", msg_id="x" * 257), BODY, "bad_signature", "webhook-id"),
    ("timestamp-not-integer", headers(f"v1,{VALID}", timestamp="soon"), BODY, "bad_timestamp", "timestamp"),
    ("timestamp-float", headers(f"v1,{VALID}", timestamp="1700000000.5"), BODY, "bad_timestamp", "timestamp"),
    ("timestamp-old", headers(f"v1,{VALID}", timestamp=NOW - 301), BODY, "stale_timestamp", "timestamp"),
    ("timestamp-future", headers(f"v1,{VALID}", timestamp=NOW + 301), BODY, "stale_timestamp", "timestamp"),
    ("timestamp-zero", headers(f"v1,{VALID}", timestamp=0), BODY, "stale_timestamp", "timestamp"),
    (
        "timestamp-year-3000",
        headers(f"v1,{VALID}", timestamp=32_503_680_000),
        BODY,
        "stale_timestamp",
        "timestamp",
    ),
    ("timestamp-18-digits", headers(f"v1,{VALID}", timestamp="9" * 18), BODY, "stale_timestamp", "timestamp"),
    (
        "timestamp-huge",
        headers(f"v1,{VALID}", timestamp="1" + "0" * 400),
        BODY,
        "bad_timestamp",
        "timestamp",
    ),
    (
        "timestamp-huge-negative",
        headers(f"v1,{VALID}", timestamp="-" + "9" * 4000),
        BODY,
        "bad_timestamp",
        "timestamp",
    ),
    (
        "timestamp-too-many-digits",
        headers(f"v1,{VALID}", timestamp="9" * 5000),
        BODY,
        "bad_timestamp",
        "timestamp",
    ),
    ("wrong-signature", headers(f"v1,{WRONG}"), BODY, "bad_signature", "match"),
    (
        "other-secret",
        sign(OTHER_SECRET, BODY, msg_id=MSG_ID, timestamp=NOW).as_dict(),
        BODY,
        "bad_signature",
        "match",
    ),
    ("body-changed", headers(f"v1,{VALID}"), BODY + b" ", "bad_signature", "match"),
    ("body-truncated", headers(f"v1,{VALID}"), BODY[:-1], "bad_signature", "match"),
    ("id-changed", headers(f"v1,{VALID}", msg_id=MSG_ID + "x"), BODY, "bad_signature", "match"),
    ("timestamp-changed", headers(f"v1,{VALID}", timestamp=NOW + 1), BODY, "bad_signature", "match"),
    ("v2-only", headers(f"v2,{VALID}"), BODY, "bad_signature", "match"),
    ("no-version", headers(VALID), BODY, "bad_signature", "match"),
    ("empty-v1", headers("v1,"), BODY, "bad_signature", "match"),
    ("garbage", headers("not a signature at all"), BODY, "bad_signature", "match"),
    ("non-ascii", headers("v1,é"), BODY, "bad_signature", "match"),
]


@pytest.mark.parametrize(
    ("given", "body", "code", "keyword"),
    [case[1:] for case in FAILURES],
    ids=[case[0] for case in FAILURES],
)
def test_failures(given: dict[str, str], body: bytes, code: str, keyword: str) -> None:
    with pytest.raises(SignatureError) as caught:
        verify(SECRET, given, body, now=NOW + 0.5)  # a float clock, like time.time()
    assert caught.value.code == code
    assert caught.value.http_status == 401
    assert keyword in caught.value.message
    assert len(caught.value.message) < 200


@pytest.mark.parametrize("skew", [-DEFAULT_TOLERANCE_S, 0, DEFAULT_TOLERANCE_S])
def test_timestamp_tolerance_is_inclusive(skew: int) -> None:
    signed = sign(SECRET, BODY, msg_id=MSG_ID, timestamp=NOW + skew)
    assert verify(SECRET, signed.as_dict(), BODY, now=NOW) == MSG_ID


def test_custom_tolerance() -> None:
    signed = sign(SECRET, BODY, msg_id=MSG_ID, timestamp=NOW - 10)
    assert verify(SECRET, signed.as_dict(), BODY, now=NOW, tolerance_s=10) == MSG_ID
    with pytest.raises(SignatureError, match="tolerance 9 s"):
        verify(SECRET, signed.as_dict(), BODY, now=NOW, tolerance_s=9)


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_"),
        ("whsec_not base64!", "base64"),
        ("whsec_" + base64.b64encode(b"short").decode(), "16 bytes"),
        ("whsec_", "16 bytes"),
    ],
    ids=["no-prefix", "not-base64", "too-short", "empty-key"],
)
def test_bad_secrets_are_refused(secret: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        decode_secret(secret)
    with pytest.raises(ValueError, match=problem):
        sign(secret, BODY)


def test_decode_secret() -> None:
    assert decode_secret(SECRET) == KEY
