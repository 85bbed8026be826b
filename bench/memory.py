"""Section 7, memory: resident memory (RSS, with any child processes) of each component, idle and under
the ingest load, with each speech-to-text engine in the processing worker (Whisper, the default, and
pocketsphinx).

Each repeat starts a fresh stack (gateway, processing worker of the engine, concat worker) and samples
RSS while it transcribes a few consecutive chunks of real speech (`tests.speech_corpus.meeting()`), so
every lazy import and the speech model are loaded and have decoded; then while idle, and while the
ingest load generator drives the gateway (whose uploads, 0.5 s of a tone, also give both workers
work). The load figure is the peak under load against the idle median of the same processes.
"""

from __future__ import annotations

import statistics
import threading
import time
import uuid
from dataclasses import dataclass, field

import psutil  # type: ignore[import-untyped]  # no stubs in the dev tools

from audioflow.workers.simulate import cut_chunks
from bench.common import BenchConfig, Section, Spread, Unmeasured, md_table, save_plot
from bench.env import bench_stack
from bench.load import drive_gateways
from bench.pipeline import follow_meeting
from bench.wer import ENGINES, load_audio
from tests.integration.stack import Stack

COMPONENTS = ("api", "processing", "concat")
MIB = 2**20
SPEECH_CHUNKS = 4
LIMIT_MB = 400  # the goal for the processing worker with the default engine


def rss(pid: int) -> int:
    """Resident bytes of a process and its children (0 once it is gone)."""
    try:
        proc = psutil.Process(pid)
        return int(proc.memory_info().rss) + sum(
            int(child.memory_info().rss) for child in proc.children(recursive=True)
        )
    except psutil.NoSuchProcess:
        return 0


@dataclass
class Sampler:
    """Samples every component's RSS every ``interval`` s in a thread, tagged with a phase."""

    pids: dict[str, int]
    interval: float = 0.1
    phase: str = "idle"
    samples: list[tuple[float, str, dict[str, int]]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, name="bench-rss", daemon=True)
        self._started = time.monotonic()
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            reading = {name: rss(pid) for name, pid in self.pids.items()}
            self.samples.append((time.monotonic() - self._started, self.phase, reading))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def of(self, phase: str, name: str) -> list[int]:
        values = [reading[name] for _, p, reading in self.samples if p == phase]
        if not values or min(values) == 0:
            raise Unmeasured(f"no RSS of {name} while {phase} (samples: {len(values)}; 0 = process gone)")
        return values


@dataclass(frozen=True)
class Plan:
    idle_s: float
    load_s: float
    concurrency: int


def plan(cfg: BenchConfig) -> Plan:
    return Plan(0.5, 0.8, 2) if cfg.tiny else Plan(2.0, 6.0, 16)


def _once(cfg: BenchConfig, p: Plan, bodies: list[bytes], engine: str) -> Sampler:
    with bench_stack(cfg, "memory") as stack:
        stack.start_worker("processing", {"AUDIOFLOW_STT_ENGINE": engine})
        stack.start_worker("concat")
        stack.start_api()
        sampler = Sampler({name: _pid(stack, name) for name in COMPONENTS}, phase="speech")
        try:
            # all three do real work: consecutive chunks of real speech, each decoded behind its predecessor
            follow_meeting(stack, f"warm-{uuid.uuid4().hex[:8]}", bodies)
            sampler.phase = "idle"
            time.sleep(p.idle_s)
            sampler.phase = "load"
            drive_gateways(
                [stack.base_url],
                stack.secret,
                [sampler.pids["api"]],
                concurrency=p.concurrency,
                seconds=p.load_s,
                meeting_prefix=f"mem-{uuid.uuid4().hex[:8]}",
            )
        finally:
            sampler.stop()
    return sampler


def _pid(stack: Stack, name: str) -> int:
    return stack.procs[name][0].pid


def run(cfg: BenchConfig) -> Section:
    p = plan(cfg)
    audio = load_audio("meeting", cfg.tiny)
    bodies = cut_chunks(audio.fmt, audio.pcm, 5.0)[: 1 if cfg.tiny else SPEECH_CHUNKS]
    runs = {engine: [_once(cfg, p, bodies, engine) for _ in range(cfg.repeats)] for engine in ENGINES}
    return _report(cfg, p, runs)


def _report(cfg: BenchConfig, p: Plan, runs: dict[str, list[Sampler]]) -> Section:
    rows = []
    summary: dict[str, object] = {}
    for engine, samplers in runs.items():
        for name in COMPONENTS:
            speech = Spread.of([max(r.of("speech", name)) / MIB for r in samplers])
            idle = Spread.of([statistics.median(r.of("idle", name)) / MIB for r in samplers])
            peak = Spread.of([max(r.of("load", name)) / MIB for r in samplers])
            growth = Spread.of(
                [max(r.of("load", name)) / statistics.median(r.of("idle", name)) for r in samplers]
            )
            rows.append([engine, name, speech.fmt(1), idle.fmt(1), peak.fmt(1), growth.fmt(2)])
            if name == "processing" or engine == ENGINES[0]:
                label = f"{name} ({engine})" if name == "processing" else name
                summary[f"{label} RSS peak decoding speech · idle → load MiB"] = (
                    f"{speech.median:.0f} · {idle.median:.0f} → {peak.median:.0f} (x{growth.median:.2f})"
                )
        if engine == ENGINES[0]:
            worst = max(reading["processing"] for r in samplers for _, _, reading in r.samples) / 1e6
            summary[f"goal: processing ({engine}) RSS ≤ {LIMIT_MB} MB"] = (
                f"{'met' if worst <= LIMIT_MB else 'NOT met'} (highest sample {worst:.0f} MB)"
            )
    table = md_table(
        [
            "processing engine",
            "component",
            "peak RSS decoding speech MiB",
            "idle RSS MiB (median of samples)",
            "peak RSS under load MiB",
            "load / idle",
        ],
        rows,
    )
    markdown = "\n\n".join(
        [
            __doc__.split("\n\n", 1)[1].strip(),
            f"Decoding speech: {SPEECH_CHUNKS} consecutive 5 s chunks of the meeting uploaded one after the "
            f"other (1 in a tiny run); idle: {p.idle_s:g} s after them; load: {p.load_s:g} s of signed 0.5 s "
            "uploads "
            f"from {p.concurrency} concurrent senders (`bench.load`'s asyncio lanes); RSS sampled every "
            f"0.1 s (psutil, process + children). {cfg.repeats} repeat(s) per engine, each a fresh stack; "
            "median (min-max) over them. The operator is not included: it needs a Kubernetes API server "
            "(its tests run it against kmock), which this benchmark does not start. MiB = 2^20 bytes; the "
            f"goal's {LIMIT_MB} MB are 10^6 bytes each ({LIMIT_MB * 1e6 / MIB:.0f} MiB).",
            table,
            _plot(cfg, runs[ENGINES[0]][-1]),
        ]
    )
    return Section("Memory", markdown, summary)


def _plot(cfg: BenchConfig, run: Sampler) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.5))
    times = [t for t, _, _ in run.samples]
    for name in COMPONENTS:
        ax.plot(times, [reading[name] / MIB for _, _, reading in run.samples], label=name)
    for phase, color, label in (("speech", "green", "decoding speech"), ("load", "orange", "ingest load")):
        times = [t for t, p, _ in run.samples if p == phase]
        if times:
            ax.axvspan(min(times), max(times), color=color, alpha=0.15, label=label)
    ax.set_xlabel("s")
    ax.set_ylabel("RSS, MiB")
    ax.set_ylim(bottom=0)
    ax.set_title(f"Resident memory per component ({ENGINES[0]} in the processing worker, last repeat)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_plot(cfg, fig, "memory_rss")
