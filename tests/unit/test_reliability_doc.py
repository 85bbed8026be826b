"""docs/reliability.md names a test for every claim: each named test file and function must exist, and
every table row must name at least one test."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "reliability.md"
REFERENCE = re.compile(r"`(tests/[\w/.-]+\.(?:py|mjs))(?:::([\w*\[\]-]+))?`")
CONTINUATION = re.compile(r"`::([\w*\[\]-]+)`")


def _references(text: str) -> list[tuple[str, str | None]]:
    found: list[tuple[str, str | None]] = []
    last_file: str | None = None
    for line in text.splitlines():
        if not line.strip() or line.startswith("|"):  # `::name` refers back within a paragraph or row
            last_file = None
        for match in re.finditer(f"{REFERENCE.pattern}|{CONTINUATION.pattern}", line):
            if match.group(1):
                last_file = match.group(1)
                found.append((last_file, match.group(2)))
            else:
                assert last_file is not None, f"`::{match.group(3)}` without a file before it: {line}"
                found.append((last_file, match.group(3)))
    return found


def test_every_named_test_exists() -> None:
    references = _references(DOC.read_text())
    assert len(references) > 40
    for file, name in references:
        path = ROOT / file
        assert path.is_file(), f"{file} does not exist"
        if name is None:
            continue
        function = name.split("[")[0]
        if "*" in function:  # a family: test_recovery_* names at least one test
            pattern = re.compile(r"def " + function.replace("*", r"\w*") + r"\(")
        else:
            pattern = re.compile(rf"def {function}\(")
        assert pattern.search(path.read_text()), f"{file} has no test named {name}"


def test_every_claim_row_names_a_test() -> None:
    rows = [line for line in DOC.read_text().splitlines() if line.startswith("| ") and "---" not in line]
    claims = [row for row in rows if not row.startswith(("| Claim", "| Failure", "| Row"))]
    assert claims
    for row in claims:
        assert "`tests/" in row or "`::" in row, f"a claim without its test: {row}"
