"""Validation of client-supplied identifiers. Nothing from a client reaches a path unchecked."""

from __future__ import annotations

import re

from audioflow.core.errors import InvalidId

MEETING_ID_PATTERN = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$"
_MEETING_ID = re.compile(MEETING_ID_PATTERN)
MAX_SEQ = 10_000_000


def check_meeting_id(value: str) -> str:
    """Return ``value`` if it is a valid meeting id (1-128 of ``[A-Za-z0-9._-]``, no leading dot)."""
    if not isinstance(value, str) or not _MEETING_ID.fullmatch(value):
        shown = repr(value)[:60]
        raise InvalidId(
            f"meeting id {shown} is invalid: use 1-128 characters of A-Z a-z 0-9 . _ - not starting with '.'",
            code="invalid_meeting_id",
        )
    return value


def check_seq(value: int) -> int:
    """Return ``value`` if it is a valid chunk sequence number (0 to 10^7)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEQ:
        raise InvalidId(f"seq {value!r} is invalid: use an integer from 0 to {MAX_SEQ}", code="invalid_seq")
    return value


def parse_seq(text: str) -> int:
    """Parse a seq from a path segment or form field, then check its range."""
    if not re.fullmatch(r"-?[0-9]{1,12}", text):
        raise InvalidId(
            f"seq {text[:40]!r} is invalid: use an integer from 0 to {MAX_SEQ}", code="invalid_seq"
        )
    return check_seq(int(text))
