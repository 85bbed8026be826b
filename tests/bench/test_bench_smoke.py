"""The benchmarks run end to end on their tiny configuration: every section measures its figures and
RESULTS.md has them all, with the plots it links. Nothing here asserts a time or a speed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench.__main__ import KEPT_MARKER, SECTIONS, SuiteResult, execute, kept_sections, merge_sections
from bench.common import BenchConfig
from tests.services import free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tiny_run(
    tmp_path_factory: pytest.TempPathFactory, redis_server_url: str, postgres_server_url: str
) -> tuple[int, SuiteResult]:
    out = tmp_path_factory.mktemp("bench")
    cfg = BenchConfig(
        tiny=True, repeats=1, out_dir=out, redis_url=redis_server_url, postgres_url=postgres_server_url
    )
    return execute(cfg, SECTIONS, ["the test session's services"])


def test_every_section_is_measured_and_the_run_succeeds(tiny_run: tuple[int, SuiteResult]) -> None:
    code, result = tiny_run
    errors = {o.name: o.error for o in result.outcomes if o.error is not None}
    assert errors == {}
    assert code == 0
    assert [o.name for o in result.outcomes] == list(SECTIONS)


@pytest.mark.parametrize("name", SECTIONS)
def test_section_has_figures_a_table_and_existing_plots(tiny_run: tuple[int, SuiteResult], name: str) -> None:
    _, result = tiny_run
    section = next(o.section for o in result.outcomes if o.name == name)
    assert section is not None, f"{name} was not measured"
    assert section.summary, f"{name} reports no headline figures"
    assert "|---" in section.markdown, f"{name} has no table"
    for link in re.findall(r"\]\((plots/[^)]+\.png)\)", section.markdown):
        assert (result.cfg.out_dir / link).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", link


def test_results_file_has_every_section_machine_and_versions(tiny_run: tuple[int, SuiteResult]) -> None:
    _, result = tiny_run
    text = (result.cfg.out_dir / "RESULTS.md").read_text()
    for heading in ("## Machine", "## Versions", "## How to reproduce", "## Summary"):
        assert heading in text
    for outcome in result.outcomes:
        assert f"<!-- section: {outcome.name} -->" in text
        assert outcome.section is not None
        assert f"## {SECTIONS.index(outcome.name) + 1}. {outcome.section.title}" in text
    assert "NOT MEASURED" not in text
    assert re.search(r"\| cores \(logical\) \| \d+ \|", text)
    assert re.search(r"\| redis-server \| \d+\.\d+", text)
    assert re.search(r"\| PostgreSQL \| \d+", text)


def test_a_section_that_cannot_measure_fails_the_run_and_says_so(
    tmp_path: Path, redis_server_url: str
) -> None:
    nothing_listens = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    cfg = BenchConfig(
        tiny=True, repeats=1, out_dir=tmp_path, redis_url=redis_server_url, postgres_url=nothing_listens
    )
    code, result = execute(cfg, ["ingest"])
    assert code == 1
    assert result.unmeasured == ["ingest"]
    text = (tmp_path / "RESULTS.md").read_text()
    assert "## 1. ingest: NOT MEASURED" in text
    assert re.search(r"\| ingest \| \d+ s \| \*\*NO\*\*: ", text)


def test_sections_measured_outside_the_bench_are_kept_across_runs(tmp_path: Path) -> None:
    report = tmp_path / "RESULTS.md"
    assert kept_sections(report) == ""
    report.write_text("# old run\n\nold figures\n")
    assert kept_sections(report) == ""
    browser = f"{KEPT_MARKER}\n\n## Live latency in the browser\n\nfigures\n"
    report.write_text("# old run\n\nold figures\n\n" + browser)
    assert kept_sections(report) == "\n" + browser


def test_an_update_replaces_only_its_sections_and_says_when() -> None:
    def report(tag: str, names: list[str]) -> str:
        rows = "".join(f"| {n} | figure | {tag} |\n| {n} | other | {tag} |\n" for n in names)
        runtimes = "".join(f"| {n} | 1 s | yes |\n" for n in names)
        body = "".join(f"<!-- section: {n} -->\n\n## {n.upper()}\n\n{n} {tag}\n\n" for n in names)
        return f"# R\n\nRecorded {tag}.\n\n## Machine\n\nm\n\n## Summary\n\n{rows}\n{runtimes}\n{body}"

    full = report("old", ["ingest", "wer", "memory"]) + f"{KEPT_MARKER}\n\n## Browser\n\nkept\n"
    merged = merge_sections(full, report("new", ["wer"]), ["wer"], "2026-12-04 10:00 UTC: on its own")
    assert "wer new" in merged and "wer old" not in merged
    assert "ingest old" in merged and "memory old" in merged and merged.endswith("## Browser\n\nkept\n")
    assert "| ingest | other | old |\n| wer | figure | new |\n| wer | other | new |\n| memory |" in merged
    assert "| ingest | 1 s | yes |\n| wer | 1 s | yes |\n| memory | 1 s | yes |" in merged
    assert "| wer | figure | old |" not in merged
    assert "## WER\n\n*2026-12-04 10:00 UTC: on its own*\n" in merged
    assert "Re-measured on their own since this run: wer (2026-12-04 10:00 UTC).\n\n## Machine" in merged
    again = merge_sections(merged, report("newer", ["ingest"]), ["ingest"], "2026-12-05 09:00 UTC: x")
    assert "since this run: wer (2026-12-04 10:00 UTC); ingest (2026-12-05 09:00 UTC)." in again
    assert again.count("Re-measured on their own") == 1 and "wer new" in again
    with pytest.raises(ValueError, match="'stt' is missing"):
        merge_sections(full, report("new", ["stt"]), ["stt"], "x")
