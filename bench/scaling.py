"""Section 5, scaling reaction: how fast the autoscalers react to a backlog, how fast they come back to
the minimum once it drains, and how often they change the scale under a steady load.

- **Local autoscaler** (``audioflow up``): its real loop (``cli.up._autoscale``, tick ``TICK_S``) on a
  real Redis stream, spawning real processing workers; the backlog is real work (staged 5 s speech
  chunks, enqueued with one XADD pipeline) that the workers drain.
- **Operator** (real kopf, in-process, against kmock's Kubernetes emulator): a Deployment annotated
  for autoscaling, a backlog XADDed into a real Redis stream, timed until the ``deployments/scale``
  PATCH has set the computed size; then the entries are acknowledged and deleted (as finished workers
  would) and timed until the PATCH back to the minimum.
- **Steady 10-minute load** on a simulated clock (``scaling_sim``): the real policy function
  ``desired_replicas`` with the production settings against the same function with its scale-down
  window and cooldown at 0 (a naive autoscaler that follows the backlog tick by tick).
"""

from __future__ import annotations

from dataclasses import replace
from statistics import median

from audioflow.cli import up
from audioflow.core.db.engine import make_engine, make_sessionmaker
from audioflow.core.scaling import ScalingPolicy
from audioflow.core.settings import Settings
from bench.common import BenchConfig, Section, Spread, md_table, save_plot
from bench.env import bench_stack, run_prefix
from bench.scaling_local import run_local
from bench.scaling_operator import run_operator
from bench.scaling_sim import Trace, World, simulate
from bench.stt_load import production_env
from tests.services import delete_prefix

OPERATOR_INTERVAL_S = float(Settings.model_fields["autoscale_interval_s"].default)
# The operator's defaults for missing annotations; the Helm chart's values are the same (min 1, max 4,
# target 10, scale-down window 60 s, cooldown 120 s).
OPERATOR_POLICY = ScalingPolicy()


def _back_to_min(traces: list[Trace]) -> list[float]:
    return [t.back_to_min_at - t.drained_at for t in traces if t.back_to_min_at and t.drained_at]


def _naive(policy: ScalingPolicy) -> ScalingPolicy:
    return replace(policy, scale_down_window_s=0.0, cooldown_s=0.0)


def run(cfg: BenchConfig) -> Section:
    with bench_stack(cfg, "scaling", **production_env()) as stack:
        engine = make_engine(stack.env["DATABASE_URL"])
        try:
            stack.start_api()
            local_policy, cold_start, local = run_local(
                stack, make_sessionmaker(engine), cfg.redis_url, cfg.repeats, cfg.tiny
            )
        finally:
            engine.dispose()

    interval = 0.5 if cfg.tiny else OPERATOR_INTERVAL_S
    operator_policy = replace(
        OPERATOR_POLICY, scale_down_window_s=0.5 if cfg.tiny else 3.0, cooldown_s=1.0 if cfg.tiny else 6.0
    )
    prefix = run_prefix()
    try:
        operator = run_operator(cfg.redis_url, prefix, operator_policy, interval, cfg.repeats)
    finally:
        delete_prefix(cfg.redis_url, prefix)

    world = World()
    steady = {
        (who, variant): [simulate(p, tick, world, seed) for seed in range(cfg.repeats)]
        for who, policy, tick in (
            ("local", up.POLICIES["processing"], up.TICK_S),
            ("operator", OPERATOR_POLICY, OPERATOR_INTERVAL_S),
        )
        for variant, p in (("policy", policy), ("naive", _naive(policy)))
    }

    local_back = local_policy.cooldown_s + up.TICK_S
    operator_back = operator_policy.cooldown_s + interval
    reaction_rows = [
        [
            "local: scale-up decided (worker spawned)",
            Spread.of([c.reaction_s for c in local]).fmt(2),
            f"one tick: {up.TICK_S:g} s",
            Spread.of([c.reaction_s / up.TICK_S for c in local]).fmt(2),
        ],
        [
            "local: then the new worker reading the stream",
            Spread.of([c.serving_s - c.reaction_s for c in local]).fmt(2),
            f"the first worker's cold start: {cold_start:.2f} s",
            Spread.of([(c.serving_s - c.reaction_s) / cold_start for c in local]).fmt(2),
        ],
        [
            "local: back to the minimum after the drain",
            Spread.of([c.back_to_min_s for c in local]).fmt(2),
            f"cooldown + one tick: {local_back:g} s",
            Spread.of([c.back_to_min_s / local_back for c in local]).fmt(2),
        ],
        [
            "operator: deployments/scale PATCH at kmock",
            Spread.of([c.reaction_s for c in operator]).fmt(2),
            f"one interval: {interval:g} s",
            Spread.of([c.reaction_s / interval for c in operator]).fmt(2),
        ],
        [
            "operator: PATCH back to the minimum after the drain",
            Spread.of([c.back_to_min_s for c in operator]).fmt(2),
            f"cooldown + one interval: {operator_back:g} s",
            Spread.of([c.back_to_min_s / operator_back for c in operator]).fmt(2),
        ],
    ]
    steady_rows = []
    summary: dict[str, str] = {
        "local scale-up ÷ tick": Spread.of([c.reaction_s / up.TICK_S for c in local]).fmt(2),
        "operator scale PATCH ÷ interval": Spread.of([c.reaction_s / interval for c in operator]).fmt(2),
        "local back to min ÷ (cooldown + tick), shortened windows": Spread.of(
            [c.back_to_min_s / local_back for c in local]
        ).fmt(2),
        "operator back to min ÷ (cooldown + interval), shortened windows": Spread.of(
            [c.back_to_min_s / operator_back for c in operator]
        ).fmt(2),
    }
    for who, policy, tick in (
        ("local", up.POLICIES["processing"], up.TICK_S),
        ("operator", OPERATOR_POLICY, OPERATOR_INTERVAL_S),
    ):
        kept, naive = steady[(who, "policy")], steady[(who, "naive")]
        changes = Spread.of([t.changes_during_load(world.load_s) for t in kept])
        naive_changes = Spread.of([t.changes_during_load(world.load_s) for t in naive])
        ratios = [
            n.changes_during_load(world.load_s) / max(1, k.changes_during_load(world.load_s))
            for k, n in zip(kept, naive, strict=True)
        ]
        for variant, traces in (("policy", kept), ("naive", naive)):
            back = _back_to_min(traces)
            name = "window + cooldown" if variant == "policy" else "naive (window = cooldown = 0)"
            steady_rows.append(
                [
                    f"{who}, {name}",
                    (changes if variant == "policy" else naive_changes).fmt(0),
                    "1.00" if variant == "policy" else Spread.of(ratios).fmt(1),
                    Spread.of([t.replica_s / world.load_s for t in traces]).fmt(2),
                    Spread.of([max(t.waits) for t in traces]).fmt(1),
                    Spread.of(back).fmt(0) if back else "-",
                ]
            )
        summary[f"{who}: scale changes in 10 min, policy vs naive"] = (
            f"{changes.median:.0f} vs {naive_changes.median:.0f} ({Spread.of(ratios).median:.0f}x)"
        )
        summary[f"{who}: back to min after drain, production windows (simulated)"] = (
            f"{median(_back_to_min(kept)):.0f} s (cooldown {policy.cooldown_s:g} s, tick {tick:g} s)"
        )

    busy = world.meetings / world.period_s * world.service_s  # replicas' worth of steady work
    markdown = "\n\n".join(
        [
            (__doc__ or "").split("\n\n", 1)[1].strip(),
            "### Reaction (seconds, median (min-max))",
            f"{cfg.repeats} cycles each: a backlog that asks for the maximum appears (target x max + 1 "
            f"5 s speech chunks for the local workers to decode; target x (max - 1) + 1 bare entries "
            f"for the operator), is drained, and the "
            f"scale comes back to the minimum. The local processing policy is production's "
            f"(target {local_policy.target_backlog}, max {local_policy.max_replicas} = cores) with its "
            f"scale-down window and cooldown shortened to {local_policy.scale_down_window_s:g} s and "
            f"{local_policy.cooldown_s:g} s for the run; the operator's Deployment is annotated "
            f"target {operator_policy.target_backlog}, max {operator_policy.max_replicas}, window "
            f"{operator_policy.scale_down_window_s:g} s, cooldown {operator_policy.cooldown_s:g} s, and it "
            f"ticks every {interval:g} s (the default). Each backlog appears, and each drain ends, at a "
            "random moment of the tick. A reaction is bounded by one tick (plus the time to read the "
            "backlog and act); coming back to the minimum happens at the first tick a cooldown after the "
            "last tick that saw a backlog, so between cooldown - tick and cooldown + tick after the "
            "drain. Within the limit means a ratio <= 1. The production windows (60 s / 120 s) are on "
            "the simulated clock below.",
            md_table(["", "seconds", "limit", "÷ limit"], reaction_rows),
            f"### Steady 10-minute load (simulated clock, {cfg.repeats} seeds)",
            f"{world.meetings} real-time meetings (one 5 s chunk every {world.period_s:g} s each, jitter "
            f"{world.jitter_s:g} s), {world.service_s:g} s per chunk (CV {world.service_cv:g}), replicas "
            f"serving {world.startup_s:g} s after they are added: about {busy:.2f} replicas of steady "
            f"work. Local: production's policy and {up.TICK_S:g} s tick; operator: "
            f"the chart's policy and its {OPERATOR_INTERVAL_S:g} s interval. After 10 min the load stops "
            "and the time back to the minimum is measured on the same clock.",
            md_table(
                [
                    "autoscaler",
                    "scale changes in 10 min",
                    "naive ÷ policy",
                    "mean replicas",
                    "longest chunk wait (s)",
                    "back to min after drain (s)",
                ],
                steady_rows,
            ),
            _plot(cfg, steady, world),
        ]
    )
    return Section("Scaling reaction", markdown, summary)


def _plot(cfg: BenchConfig, steady: dict[tuple[str, str], list[Trace]], world: World) -> str:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    figure, axes = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for ax, who in zip(axes, ("local", "operator"), strict=True):
        kept, naive = steady[(who, "policy")][0], steady[(who, "naive")][0]
        backlog = ax.twinx()
        backlog.fill_between(kept.times, kept.backlog, step="post", color="grey", alpha=0.25)
        backlog.set_ylabel("backlog (policy run)", color="grey")
        ax.step(
            naive.times, naive.replicas, where="post", color="tab:red", label="naive (no window, no cooldown)"
        )
        ax.step(
            kept.times,
            kept.replicas,
            where="post",
            color="tab:blue",
            lw=2,
            label="policy (window + cooldown)",
        )
        ax.axvline(world.load_s, color="black", ls=":", lw=1)
        ax.set_ylabel("replicas")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"{who} autoscaler, steady load for {world.load_s / 60:g} min then none (seed 0)")
        ax.set_zorder(backlog.get_zorder() + 1)
        ax.patch.set_visible(False)
        ax.legend(fontsize=8, loc="upper right")
    axes[-1].set_xlabel("simulated seconds")
    return save_plot(cfg, figure, "scaling_replicas")
