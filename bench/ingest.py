"""Section 1, ingest: chunks per second the gateway accepts from 64 concurrent senders, and one sender's
latency, against the seed's kind of work measured in the same run.

Driven by wrk, as the comparison with the seed is (``bench.ingest_wrk`` runs each measurement; its
docstring says how): one wrk thread on the same 2 cores, each request a new (meeting, seq), a warm-up
before each timed run, ``AUDIOFLOW_FSYNC`` off unless said. Per repeat, one after the other on the same
services: at 64 connections the seed-work baseline, the JSON webhook and the signed ``PUT`` with one and
with two gateway processes, then the webhook (one and two processes) and the ``PUT`` (two) with fsync
on; at one connection the baseline and both routes with one process. ``make bench-ingest`` adds
retried deliveries, meetings' first chunks and the seed's own backend.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import NamedTuple

from bench import ingest_wrk
from bench.common import BenchConfig, Section, Spread, md_table, save_plot
from bench.ingest_wrk import Run


class Kind(NamedTuple):
    """One measurement of a pass: what is sent, to how many gateway processes, with fsync on or off."""

    what: str
    workers: int
    fsync: bool = False


Key = tuple[int, Kind]  # connections, and what was measured at them
BASELINE = "baseline"
BASE = Kind(BASELINE, 1)  # what every ratio is to, in the same pass
# Measured at each number of connections; the baseline first in every pass.
KINDS = {
    64: (
        BASE,
        Kind("webhook", 1),
        Kind("webhook", 2),
        Kind("put", 1),
        Kind("put", 2),
        Kind("webhook", 1, fsync=True),
        Kind("webhook", 2, fsync=True),
        Kind("put", 2, fsync=True),
    ),
    1: (BASE, Kind("webhook", 1), Kind("put", 1)),
}
ROUTES = {BASELINE: "seed-work baseline", "webhook": "JSON webhook", "put": "signed `PUT`"}


@dataclass(frozen=True)
class Plan:
    seconds: float  # timed, per measurement
    warmup: float  # whole seconds: wrk takes no fractions
    scratch: str  # where the chunk files go: see ingest_wrk.scratch_space


def plan(cfg: BenchConfig) -> Plan:
    return Plan(1.0, 1.0, "tmp") if cfg.tiny else Plan(8.0, 2.0, "auto")


def run(cfg: BenchConfig) -> Section:
    p = plan(cfg)
    results: dict[Key, list[Run]] = defaultdict(list)
    with ingest_wrk.scratch_space(p.scratch) as files:
        if not cfg.tiny:  # not recorded: the first run on fresh services is slower (ingest_wrk.main)
            ingest_wrk.measure(
                cfg, "webhook", fsync=False, workers=1, seconds=3.0, warmup=p.warmup, connections=64
            )
        for _ in range(cfg.repeats):
            for connections, kinds in KINDS.items():
                for kind in kinds:
                    one = ingest_wrk.measure(
                        cfg, kind.what, fsync=kind.fsync, workers=kind.workers, seconds=p.seconds,
                        warmup=p.warmup, connections=connections,
                    )  # fmt: skip
                    results[connections, kind].append(one)
    return _report(cfg, p, results, files)


def _spread(runs: list[Run], figure: str) -> Spread:
    """A figure of every run (``rate``, ``p99_ms``, ...: an attribute of ``Run``), as min / median / max."""
    return Spread.of([getattr(r, figure) for r in runs])


def _to_baseline(results: dict[Key, list[Run]], key: Key) -> Spread:
    """Accepted/s over the baseline's in the same pass, per repeat."""
    connections, _ = key
    base = results[connections, BASE]
    return Spread.of([r.rate / b.rate for r, b in zip(results[key], base, strict=True)])


def _report(cfg: BenchConfig, p: Plan, results: dict[Key, list[Run]], files: str) -> Section:
    rows = []
    for connections, kinds in KINDS.items():
        for kind in kinds:
            key: Key = (connections, kind)
            runs = results[key]
            rows.append(
                [
                    connections,
                    ROUTES[kind.what],
                    kind.workers if kind != BASE else "-",
                    "on" if kind.fsync else "off",
                    _spread(runs, "rate").fmt(0),
                    _spread(runs, "p50_ms").fmt(1),
                    _spread(runs, "p99_ms").fmt(1),
                    _spread(runs, "server_cpu_ms").fmt(2),
                    _spread(runs, "wrk_cpu_ms").fmt(3),
                    "1" if kind == BASE else _to_baseline(results, key).fmt(2),
                    sum(r.requests for r in runs),
                ]
            )
    table = md_table(
        [
            "connections", "what", "gateway processes", "fsync", "accepted/s", "p50 ms", "p99 ms",
            "server CPU ms per chunk", "wrk CPU ms per chunk", "accepted/s ÷ baseline (same pass)",
            "accepted (all repeats)",
        ],
        rows,
    )  # fmt: skip
    busy: Key = (64, Kind("webhook", 2))
    synced: Key = (64, Kind("webhook", 2, fsync=True))
    one_sender = results[1, Kind("webhook", 1)]
    summary: dict[str, object] = {
        "webhook, 2 processes @c=64: accepted/s": _spread(results[busy], "rate").fmt(0),
        "webhook, 2 processes @c=64: p50 / p99 ms": (
            f"{_spread(results[busy], 'p50_ms').fmt(1)} / {_spread(results[busy], 'p99_ms').fmt(1)}"
        ),
        "webhook, 2 processes @c=64 ÷ seed-work baseline": _to_baseline(results, busy).fmt(2),
        "PUT, 2 processes @c=64 ÷ seed-work baseline": _to_baseline(results, (64, Kind("put", 2))).fmt(2),
        "webhook, 2 processes, fsync on @c=64: accepted/s": _spread(results[synced], "rate").fmt(0),
        "webhook, 2 processes, fsync on @c=64: p99 ms": _spread(results[synced], "p99_ms").fmt(1),
        "gateway CPU ms per chunk @c=64 (webhook, 2 processes)": (
            _spread(results[busy], "server_cpu_ms").fmt(2)
        ),
        "one sender, webhook: p50 / p99 ms": (
            f"{_spread(one_sender, 'p50_ms').fmt(1)} / {_spread(one_sender, 'p99_ms').fmt(1)}"
        ),
    }
    markdown = "\n\n".join(
        [
            f"wrk (one thread) sends, from *connections* keep-alive connections, requests each for a new "
            f"(meeting, seq) over 64 meetings: a {p.warmup:g} s warm-up, then {p.seconds:g} s timed. "
            f"Real `audioflow api` processes (`--workers N`) on PostgreSQL and Redis, no workers, "
            f"`AUDIOFLOW_FSYNC=false` unless the *fsync* column says on (off: each chunk file is written, "
            f"not synced, which measures the software, not the disk; on: a batch's files and their "
            f"folder are synced before its commit, which measures this machine's disk too); {files}. "
            f"The **JSON webhook** is `POST /webhooks/chunk` `{{meetingId, seq, url}}`, the gateway "
            f"fetching a {len(ingest_wrk.CHUNK):,}-byte WAV (1 s, 16 kHz mono) from a `file:` URL under "
            "its ingest root; the **signed `PUT`** carries the same WAV as its body. The **seed-work "
            "baseline** does the seed's work per webhook in Python (an insert, an XADD, a select and a "
            "log PUBLISH; `bench/seed_baseline.py`), with the same bodies. The gateway does more per "
            "chunk: it verifies the signature, fetches and parses the WAV, hashes it, stores its file, "
            "records the webhook-id, and enqueues the work of both workers with the page's events.",
            "**Shared cores.** wrk, the servers and the gateway processes share the machine's 2 cores, so "
            "two processes cannot double the rate; `server CPU ms per chunk` (the loaded processes' own "
            "CPU over the timed run, per chunk accepted) is the figure least disturbed by neighbours.",
            f"Each cell is median (min-max) over {cfg.repeats} repeat(s); percentiles are wrk's, within "
            "each run. `make bench-ingest` measures retried deliveries, meetings' first chunks "
            "and, given a checkout of it, the seed's own backend; its runs are in the section *Ingest at 64 "
            "concurrent senders (wrk)* below.",
            table,
            _plot(cfg, results),
        ]
    )
    return Section("Ingest throughput and latency", markdown, summary)


def _plot(cfg: BenchConfig, results: dict[Key, list[Run]]) -> str:
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    kinds = [kind for kind in KINDS[64] if not kind.fsync]  # the software alone, comparable to the baseline
    labels = [kind.what if kind == BASE else f"{kind.what} x{kind.workers}" for kind in kinds]
    xs = range(len(kinds))
    rates = [_spread(results[64, kind], "rate") for kind in kinds]
    left.bar(
        xs,
        [s.median for s in rates],
        yerr=[[s.median - s.low for s in rates], [s.high - s.median for s in rates]],
        capsize=3,
        color=["grey", *["tab:blue"] * (len(kinds) - 1)],
    )
    left.set_ylabel("accepted / s (median, min-max bars)")
    left.set_title("64 concurrent senders")
    for figure, offset, label in (("p50_ms", -0.2, "p50"), ("p99_ms", 0.2, "p99")):
        spreads = [_spread(results[64, kind], figure) for kind in kinds]
        right.bar([x + offset for x in xs], [s.median for s in spreads], width=0.4, label=label)
    right.set_ylabel("latency, ms (median over repeats)")
    right.set_title("64 concurrent senders: latency")
    right.legend(fontsize=8)
    for ax in (left, right):
        ax.set_xticks(list(xs), labels, rotation=20, fontsize=8)
        ax.grid(alpha=0.3, axis="y")
    return save_plot(cfg, fig, "ingest_throughput")
