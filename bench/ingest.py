"""Section 1, ingest: signed chunk uploads per second the gateway sustains, against the raw work.

Real gateway processes (``audioflow api``) on PostgreSQL and Redis, no workers. The same run measures
the raw work (one chunk row insert + one XADD, from this process's threads) at the same concurrencies,
so the ratio gateway / raw is the framework's cost on this machine today. Also two gateway processes
(load spread round-robin) against one. Every combination is taken ``repeats`` times, interleaved so
that drift of the shared machine hits all of them alike.
"""

from __future__ import annotations

import contextlib
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from bench.common import BenchConfig, Section, Spread, md_table, save_plot
from bench.env import bench_stack, other_gateway
from bench.load import CHUNK, LoadResult, RawLoop, drive_gateways

MODES = ("raw", "gateway x1", "gateway x2")


@dataclass(frozen=True)
class Plan:
    concurrencies: tuple[int, ...]
    seconds: float  # per measurement


def plan(cfg: BenchConfig) -> Plan:
    return Plan((1, 2), 0.4) if cfg.tiny else Plan((1, 4, 16), 2.5)


def _spread(results: list[LoadResult], what: str) -> Spread:
    if what == "throughput":
        return Spread.of([r.throughput for r in results])
    if what == "p50":
        return Spread.of([r.p(50) * 1000 for r in results])
    if what == "p99":
        return Spread.of([r.p(99) * 1000 for r in results])
    if what == "server_cpu":
        return Spread.of([r.server_cpu_s / r.requests * 1000 for r in results])
    return Spread.of([r.client_cpu_s / r.requests * 1000 for r in results])


def run(cfg: BenchConfig) -> Section:
    p = plan(cfg)
    results: dict[tuple[str, int], list[LoadResult]] = {(m, c): [] for m in MODES for c in p.concurrencies}
    with bench_stack(cfg, "ingest") as stack, contextlib.ExitStack() as cleanup:
        second = other_gateway(stack, 1)
        cleanup.callback(second.stop)
        with ThreadPoolExecutor(2) as pool:  # the two gateways start side by side
            for started in [pool.submit(stack.start_api), pool.submit(second.start_api)]:
                started.result()
        prefix = stack.env["AUDIOFLOW_REDIS_PREFIX"]
        raw = RawLoop(stack.env["DATABASE_URL"], cfg.redis_url, prefix, max(p.concurrencies))
        cleanup.callback(raw.close)
        one = [stack.base_url]
        both = [stack.base_url, second.base_url]
        pids_one = [proc.pid for proc in stack.procs["api"]]
        pids_both = pids_one + [proc.pid for proc in second.procs["api"]]
        for repeat in range(cfg.repeats):
            for c in p.concurrencies:
                tag = f"r{repeat}-c{c}-{uuid.uuid4().hex[:6]}"
                results["raw", c].append(
                    raw.run(concurrency=c, seconds=p.seconds, meeting_prefix=f"raw-{tag}")
                )
                for mode, urls, pids in (("gateway x1", one, pids_one), ("gateway x2", both, pids_both)):
                    results[mode, c].append(
                        drive_gateways(
                            urls,
                            stack.secret,
                            pids,
                            concurrency=c,
                            seconds=p.seconds,
                            meeting_prefix=f"{mode[-2:]}-{tag}",
                        )
                    )
    return _report(cfg, p, results)


def _ratio(
    results: dict[tuple[str, int], list[LoadResult]], top: str, bottom: str, c: int, what: str
) -> Spread:
    """Per repeat (both taken in the same pass), then min/median/max."""
    pairs = list(zip(results[top, c], results[bottom, c], strict=True))
    if what == "throughput":
        return Spread.of([a.throughput / b.throughput for a, b in pairs])
    if what == "cpu":  # the loaded process's CPU per op: the gateway's own, against the raw loop's own
        return Spread.of([(a.server_cpu_s / a.requests) / (b.client_cpu_s / b.requests) for a, b in pairs])
    return Spread.of([a.p(50) / b.p(50) for a, b in pairs])


def _report(cfg: BenchConfig, p: Plan, results: dict[tuple[str, int], list[LoadResult]]) -> Section:
    rows = []
    for c in p.concurrencies:
        for mode in MODES:
            rs = results[mode, c]
            rows.append(
                [
                    c,
                    mode,
                    _spread(rs, "throughput").fmt(0),
                    _spread(rs, "p50").fmt(2),
                    _spread(rs, "p99").fmt(2),
                    _spread(rs, "server_cpu").fmt(2) if mode != "raw" else "(in the loop)",
                    _spread(rs, "client_cpu").fmt(2),
                    sum(r.requests for r in rs),
                ]
            )
    table = md_table(
        [
            "concurrency",
            "what",
            "ops/s",
            "p50 ms",
            "p99 ms",
            "gateway CPU ms/op",
            "loop process CPU ms/op",
            "ops (all repeats)",
        ],
        rows,
    )
    ratio_rows = []
    summary: dict[str, object] = {}
    for c in p.concurrencies:
        gw_raw = _ratio(results, "gateway x1", "raw", c, "throughput")
        two_one = _ratio(results, "gateway x2", "gateway x1", c, "throughput")
        ratio_rows.append(
            [
                c,
                gw_raw.fmt(3),
                _ratio(results, "gateway x1", "raw", c, "p50").fmt(1),
                _ratio(results, "gateway x1", "raw", c, "cpu").fmt(1),
                two_one.fmt(2),
            ]
        )
        summary[f"gateway/raw throughput @c={c}"] = gw_raw.fmt(3)
        summary[f"2 gateways/1 @c={c}"] = two_one.fmt(2)
    cpu = _ratio(results, "gateway x1", "raw", max(p.concurrencies), "cpu")
    summary[f"gateway/raw CPU per op @c={max(p.concurrencies)}"] = cpu.fmt(1)
    ratios = md_table(
        [
            "concurrency",
            "gateway / raw throughput",
            "gateway / raw p50 latency",
            "gateway / raw CPU per op",
            "2 gateways / 1 gateway throughput",
        ],
        ratio_rows,
    )
    top = max(p.concurrencies)
    summary["gateway uploads/s"] = f"{_spread(results['gateway x1', top], 'throughput').fmt(0)} @c={top}"
    plot = _plot(cfg, p, results)
    markdown = "\n\n".join(
        [
            f"Signed `PUT /v1/meetings/{{id}}/chunks/{{seq}}` uploads of one {len(CHUNK):,}-byte WAV "
            f"(0.5 s, 16 kHz mono), each to a new (meeting, seq), sent from *concurrency* asyncio lanes "
            f"(one httpx client, keep-alive; each lane its own meeting, created in an untimed warm-up) for "
            f"{p.seconds:g} s per measurement. Real `audioflow api` processes on PostgreSQL and Redis, no "
            "workers, `AUDIOFLOW_FSYNC=false` (the chunk file is written but not fsynced: this measures "
            "the software, not the disk). **raw** is the work the gateway exists to do, from a thread per "
            "lane in the benchmark process: one `chunks` row inserted through the real SQLAlchemy models "
            "in its own transaction, and one XADD. The gateway does more per upload, and that is the point "
            "of the ratio: it verifies the signature, parses the WAV, hashes it, reads the meeting and "
            "the chunk's key, records the webhook id, writes the chunk file, and XADDs the work for both "
            "workers plus the `chunk.received` and `log` events.",
            "**Shared cores.** The load generator runs on the same 2 cores as the gateway(s), Redis and "
            "PostgreSQL; its own CPU per upload is the *loop process CPU* column, so the absolute "
            "figures understate what a gateway on its own cores would do. For the same reason two "
            "gateway processes cannot double throughput here: two processes plus the client and the "
            "servers already oversubscribe two cores. `gateway CPU ms/op` (the gateway processes' own "
            "CPU time per upload, against the raw loop's own CPU per op) is the figure least disturbed by "
            "neighbours.",
            f"Each cell is median (min-max) over {cfg.repeats} repeat(s); latency percentiles are taken "
            "within each repeat.",
            table,
            "Ratios, each taken within one pass (the two measurements run back to back), then "
            "median (min-max) over the repeats:",
            ratios,
            plot,
        ]
    )
    return Section("Ingest throughput and latency", markdown, summary)


def _plot(cfg: BenchConfig, p: Plan, results: dict[tuple[str, int], list[LoadResult]]) -> str:
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    xs = list(p.concurrencies)
    for mode, style in zip(MODES, ("k--o", "b-o", "g-s"), strict=True):
        spreads = [_spread(results[mode, c], "throughput") for c in xs]
        med = [s.median for s in spreads]
        err = [[s.median - s.low for s in spreads], [s.high - s.median for s in spreads]]
        left.errorbar(xs, med, yerr=err, fmt=style, capsize=3, label=mode)
        if mode != "raw":
            p99 = [_spread(results[mode, c], "p99").median for c in xs]
            p50 = [_spread(results[mode, c], "p50").median for c in xs]
            right.plot(xs, p50, style, label=f"{mode} p50")
            right.plot(xs, p99, style.replace("-", ":", 1), alpha=0.6, label=f"{mode} p99")
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.set_xlabel("concurrent senders")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    left.set_ylabel("ops / s (median, min-max bars)")
    left.set_title("Throughput: gateway vs raw insert+XADD")
    right.set_ylabel("upload latency, ms (median over repeats)")
    right.set_title("Gateway upload latency")
    return save_plot(cfg, fig, "ingest_throughput")
