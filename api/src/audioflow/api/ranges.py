"""HTTP Range (RFC 9110 §14) for one byte range; multi-range requests are answered whole."""

from __future__ import annotations

import re

from audioflow.core.errors import RangeNotSatisfiable

_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$")
#: Positions with more digits than this are beyond any file (and past what int() parses by default).
_MAX_DIGITS = 18
_BEYOND = 10**_MAX_DIGITS


def _position(text: str) -> int:
    significant = text.lstrip("0") or "0"
    return _BEYOND if len(significant) > _MAX_DIGITS else int(significant)


def parse_range(header: str | None, total: int) -> tuple[int, int] | None:
    """The inclusive ``(first, last)`` byte positions to send, or None for the whole representation.

    A header that is not a single ``bytes=`` range is ignored, as the RFC allows. A range that starts
    past the end raises RangeNotSatisfiable.
    """
    if not header:
        return None
    match = _RANGE.match(header)
    if match is None:
        return None
    first_text, last_text = match.groups()
    if not first_text and not last_text:
        return None
    if not first_text:  # suffix: the last N bytes
        length = _position(last_text)
        if length == 0 or total == 0:
            raise RangeNotSatisfiable(f"empty suffix range or resource; the resource has {total} bytes")
        return max(0, total - length), total - 1
    first = _position(first_text)
    if first >= total:
        raise RangeNotSatisfiable(f"range starts at byte {first} but the resource has {total} bytes")
    last = _position(last_text) if last_text else total - 1
    if last < first:
        return None
    return first, min(last, total - 1)
