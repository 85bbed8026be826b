"""Client-supplied identifiers (audioflow.core.ids): meeting ids and chunk sequence numbers."""

from __future__ import annotations

import re

import pytest

from audioflow.core.errors import InvalidId
from audioflow.core.ids import MAX_SEQ, MEETING_ID_PATTERN, check_meeting_id, check_seq, parse_seq

VALID_MEETING_IDS: list[tuple[str, str]] = [
    ("one-char", "a"),
    ("digit", "7"),
    ("underscore-first", "_m"),
    ("dash-first", "-m"),
    ("mixed", "Team_Sync-2024.05.01"),
    ("inner-dots", "a..b"),
    ("trailing-dot", "m."),
    ("max-length", "m" * 128),
]


@pytest.mark.parametrize("value", [v for _, v in VALID_MEETING_IDS], ids=[i for i, _ in VALID_MEETING_IDS])
def test_valid_meeting_ids(value: str) -> None:
    assert check_meeting_id(value) == value
    assert re.fullmatch(MEETING_ID_PATTERN, value)  # the pattern the OpenAPI schema publishes agrees


INVALID_MEETING_IDS: list[tuple[str, str]] = [
    ("empty", ""),
    ("too-long", "m" * 129),
    ("slash", "a/b"),
    ("backslash", "a\\b"),
    ("dot", "."),
    ("dot-dot", ".."),
    ("traversal", "../etc"),
    ("leading-dot", ".hidden"),
    ("nul", "a\x00b"),
    ("newline-at-end", "abc\n"),
    ("newline-inside", "a\nb"),
    ("space", "a b"),
    ("percent", "a%2Fb"),
    ("colon", "c:"),
    ("non-ascii-letter", "réunion"),
    ("fullwidth-digit", "m\uff11"),
    ("tab", "\tm"),
]


@pytest.mark.parametrize(
    "value", [v for _, v in INVALID_MEETING_IDS], ids=[i for i, _ in INVALID_MEETING_IDS]
)
def test_invalid_meeting_ids(value: str) -> None:
    with pytest.raises(InvalidId) as caught:
        check_meeting_id(value)
    assert caught.value.code == "invalid_meeting_id"
    assert caught.value.http_status == 400
    assert "meeting id" in caught.value.message
    assert len(caught.value.message) < 200  # a long id is shown shortened


@pytest.mark.parametrize("value", [None, 5, b"m1"], ids=["none", "int", "bytes"])
def test_meeting_id_must_be_a_string(value: object) -> None:
    with pytest.raises(InvalidId):
        check_meeting_id(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [0, 1, 42, MAX_SEQ - 1, MAX_SEQ], ids=str)
def test_valid_seqs(value: int) -> None:
    assert MAX_SEQ == 10**7
    assert check_seq(value) == value
    assert parse_seq(str(value)) == value


@pytest.mark.parametrize(
    "value",
    [-1, MAX_SEQ + 1, 10**20, True, False, 1.0, "1", None],
    ids=["negative", "max-plus-one", "huge", "true", "false", "float", "str", "none"],
)
def test_invalid_seqs(value: object) -> None:
    with pytest.raises(InvalidId) as caught:
        check_seq(value)  # type: ignore[arg-type]
    assert caught.value.code == "invalid_seq"
    assert caught.value.http_status == 400
    assert "seq" in caught.value.message
    assert str(MAX_SEQ) in caught.value.message


PARSE_SEQ_OK: list[tuple[str, int]] = [("0", 0), ("00", 0), ("007", 7), ("10000000", MAX_SEQ)]


@pytest.mark.parametrize(("text", "expected"), PARSE_SEQ_OK, ids=[t for t, _ in PARSE_SEQ_OK])
def test_parse_seq(text: str, expected: int) -> None:
    assert parse_seq(text) == expected


PARSE_SEQ_BAD: list[tuple[str, str]] = [
    ("empty", ""),
    ("negative", "-1"),
    ("max-plus-one", "10000001"),
    ("thirteen-digits", "1" * 13),
    ("huge", "9" * 5000),
    ("letters", "abc"),
    ("hex", "0x10"),
    ("plus", "+1"),
    ("decimal", "1.0"),
    ("exponent", "1e3"),
    ("spaces", " 1 "),
    ("underscore", "1_000"),
    ("arabic-indic-digits", "\u0661\u0662\u0663"),
    ("fullwidth-digits", "\uff11\uff12"),
    ("newline", "1\n"),
]


@pytest.mark.parametrize("text", [t for _, t in PARSE_SEQ_BAD], ids=[i for i, _ in PARSE_SEQ_BAD])
def test_parse_seq_refuses(text: str) -> None:
    with pytest.raises(InvalidId) as caught:
        parse_seq(text)
    assert caught.value.code == "invalid_seq"
    assert "seq" in caught.value.message
    assert len(caught.value.message) < 200
