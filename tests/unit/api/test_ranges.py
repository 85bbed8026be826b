"""HTTP Range parsing for the recording (audioflow.api.ranges.parse_range)."""

from __future__ import annotations

import pytest

from audioflow.api.ranges import parse_range
from audioflow.core.errors import RangeNotSatisfiable

TOTAL = 1000

SATISFIABLE: list[tuple[str, str | None, int, tuple[int, int] | None]] = [
    ("first-byte", "bytes=0-0", TOTAL, (0, 0)),
    ("first-ten", "bytes=0-9", TOTAL, (0, 9)),
    ("middle", "bytes=100-199", TOTAL, (100, 199)),
    ("open-ended", "bytes=100-", TOTAL, (100, TOTAL - 1)),
    ("open-from-zero", "bytes=0-", TOTAL, (0, TOTAL - 1)),
    ("last-byte", f"bytes={TOTAL - 1}-", TOTAL, (TOTAL - 1, TOTAL - 1)),
    ("suffix", "bytes=-100", TOTAL, (TOTAL - 100, TOTAL - 1)),
    ("suffix-one", "bytes=-1", TOTAL, (TOTAL - 1, TOTAL - 1)),
    ("suffix-larger-than-total", "bytes=-5000", TOTAL, (0, TOTAL - 1)),
    ("suffix-equal-to-total", f"bytes=-{TOTAL}", TOTAL, (0, TOTAL - 1)),
    ("last-beyond-end-clamped", "bytes=900-5000", TOTAL, (900, TOTAL - 1)),
    ("whitespace-tolerated", "  bytes = 5 - 9 ", TOTAL, (5, 9)),
    ("small-resource", "bytes=0-100", 44, (0, 43)),
    # Anything that is not one bytes= range is ignored: the whole representation is sent (200).
    ("no-header", None, TOTAL, None),
    ("empty-header", "", TOTAL, None),
    ("malformed-no-equals", "bytes 0-1", TOTAL, None),
    ("malformed-letters", "bytes=a-b", TOTAL, None),
    ("malformed-dash-only", "bytes=-", TOTAL, None),
    ("malformed-negative", "bytes=--5", TOTAL, None),
    ("other-unit", "items=0-1", TOTAL, None),
    ("last-before-first", "bytes=10-5", TOTAL, None),
    ("multi-range", "bytes=0-1,5-6", TOTAL, None),
    ("multi-range-spaced", "bytes=0-1, 5-6", TOTAL, None),
]


@pytest.mark.parametrize(
    ("header", "total", "expected"), [case[1:] for case in SATISFIABLE], ids=[case[0] for case in SATISFIABLE]
)
def test_parse_range(header: str | None, total: int, expected: tuple[int, int] | None) -> None:
    assert parse_range(header, total) == expected


UNSATISFIABLE: list[tuple[str, str, int]] = [
    ("start-at-end", f"bytes={TOTAL}-", TOTAL),
    ("start-past-end-open", "bytes=5000-", TOTAL),
    ("start-past-end-closed", "bytes=5000-6000", TOTAL),
    ("empty-suffix", "bytes=-0", TOTAL),
    ("suffix-of-empty-resource", "bytes=-10", 0),
    ("start-of-empty-resource", "bytes=0-", 0),
]


@pytest.mark.parametrize(
    ("header", "total"), [case[1:] for case in UNSATISFIABLE], ids=[case[0] for case in UNSATISFIABLE]
)
def test_unsatisfiable_range_raises(header: str, total: int) -> None:
    with pytest.raises(RangeNotSatisfiable) as caught:
        parse_range(header, total)
    assert caught.value.http_status == 416
    assert str(total) in caught.value.message


def test_every_satisfiable_answer_lies_inside_the_resource() -> None:
    for first in range(0, 12):
        for last in range(0, 14):
            for total in range(1, 11):
                try:
                    got = parse_range(f"bytes={first}-{last}", total)
                except RangeNotSatisfiable:
                    assert first >= total
                    continue
                if got is not None:
                    assert 0 <= got[0] <= got[1] < total


def test_positions_of_thousands_of_digits_are_ranges_not_crashes() -> None:
    """Python's int() refuses strings over 4,300 digits (a ValueError that was a 500)."""
    digits = "9" * 5000
    assert parse_range(f"bytes=0-{digits}", 100) == (0, 99)  # to the end
    assert parse_range(f"bytes=-{digits}", 100) == (0, 99)  # a suffix longer than the file: all of it
    assert parse_range(f"bytes=0000{'0' * 5000}5-9", 100) == (5, 9)  # leading zeros are not size
    with pytest.raises(RangeNotSatisfiable):
        parse_range(f"bytes={digits}-", 100)
