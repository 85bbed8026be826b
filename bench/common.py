"""What every benchmark section shares: its configuration, the summary statistics, tables and plots.

A section is a module with ``run(cfg: BenchConfig) -> Section``. It raises :class:`Unmeasured` when it cannot
measure something: the runner then exits non-zero instead of writing a figure it does not have.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
EN_DASH = "\u2013"


class Unmeasured(RuntimeError):
    """A figure could not be measured; the run fails rather than skip it."""


@dataclass(frozen=True)
class BenchConfig:
    tiny: bool = False  # the suite's smoke test: the smallest sizes that still run every code path
    repeats: int = 3  # every figure is taken this many times and reported as min / median / max
    out_dir: Path = BENCH_DIR  # RESULTS.md and plots/ go here
    redis_url: str = ""  # set by the runner (the caller's REDIS_URL, else an embedded server)
    postgres_url: str = ""  # a PostgreSQL server URL (the caller's DATABASE_URL, else embedded)

    @property
    def plots_dir(self) -> Path:
        path = self.out_dir / "plots"
        path.mkdir(parents=True, exist_ok=True)
        return path


@dataclass
class Section:
    title: str
    markdown: str  # the section body: tables, plot links, a sentence on method
    summary: dict[str, Any] = field(default_factory=dict)  # headline figures, for the README summary


@dataclass(frozen=True)
class Spread:
    low: float
    median: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        if not values:
            raise Unmeasured("no samples")
        return cls(min(values), statistics.median(values), max(values))

    def fmt(self, digits: int = 2) -> str:
        """``median (min to max)``, the range with an en dash."""
        return f"{self.median:.{digits}f} ({self.low:.{digits}f}{EN_DASH}{self.high:.{digits}f})"


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear interpolation; raises Unmeasured on no samples."""
    if not values:
        raise Unmeasured("no samples")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def md_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def save_plot(cfg: BenchConfig, figure: Any, name: str) -> str:
    """Save a matplotlib figure as plots/<name>.png; returns the Markdown image link (relative)."""
    import matplotlib.pyplot as plt

    path = cfg.plots_dir / f"{name}.png"
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return f"![{name}](plots/{path.name})"
