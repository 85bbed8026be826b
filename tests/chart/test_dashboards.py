"""The Grafana dashboards: valid JSON, sound panels, and PromQL that names only metrics the code defines."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.chart.tools import CHART, ROOT

DASHBOARDS = sorted((CHART / "dashboards").glob("*.json"))
METRIC_MODULES = [
    ROOT / "core/src/audioflow/core/metrics.py",
    ROOT / "operator/src/audioflow/operator/metrics.py",
]

# What each prometheus_client type exposes (Counter "x" and "x_total" both expose "x_total").
_SUFFIXES = {
    "Counter": ("_total", "_created"),
    "Gauge": ("",),
    "Histogram": ("_bucket", "_sum", "_count", "_created"),
    "Summary": ("", "_sum", "_count", "_created"),
    "Info": ("_info",),
    "Enum": ("",),
}

PROMQL_FUNCTIONS = {
    "abs",
    "absent",
    "absent_over_time",
    "avg_over_time",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "count_over_time",
    "delta",
    "deriv",
    "exp",
    "floor",
    "histogram_quantile",
    "idelta",
    "increase",
    "irate",
    "label_join",
    "label_replace",
    "last_over_time",
    "ln",
    "log2",
    "log10",
    "max_over_time",
    "min_over_time",
    "predict_linear",
    "quantile_over_time",
    "rate",
    "resets",
    "round",
    "scalar",
    "sort",
    "sort_desc",
    "sqrt",
    "stddev_over_time",
    "sum_over_time",
    "time",
    "timestamp",
    "vector",
}
PROMQL_AGGREGATIONS = {
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
}
PROMQL_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
}


def defined_metrics() -> dict[str, set[str]]:
    """Metric base name -> the series names it exposes, from the metric modules' source (not imported)."""
    found: dict[str, set[str]] = {}
    for module in METRIC_MODULES:
        tree = ast.parse(module.read_text(encoding="utf-8"), filename=str(module))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)):
                continue
            kind = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
            if kind not in _SUFFIXES or not isinstance(node.args[0].value, str):
                continue
            name = node.args[0].value
            base = name.removesuffix("_total") if kind == "Counter" else name
            found[base] = {base + suffix for suffix in _SUFFIXES[kind]}
    return found


def exposed_series() -> set[str]:
    return set().union(*defined_metrics().values())


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, keywords and labels removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', " ", expr)  # strings (label values)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)  # label lists
    names = set()
    for match in re.finditer(r"(?<![\w.$])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?", text):
        word, call = match.group(1), match.group(2)
        if call:
            assert word in PROMQL_FUNCTIONS | PROMQL_AGGREGATIONS, f"unknown PromQL function {word} in {expr}"
        elif word.lower() not in PROMQL_KEYWORDS and word not in PROMQL_AGGREGATIONS:
            names.add(word)
    return names


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))  # collapsed rows
    return found


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def test_metric_modules_define_the_expected_metrics() -> None:
    series = exposed_series()
    for name in (
        "audioflow_stream_entries_total",
        "audioflow_stream_handle_seconds_bucket",
        "audioflow_worker_busy",
        "audioflow_operator_reconcile_seconds_bucket",
        "audioflow_operator_desired_replicas",
        "audioflow_operator_scaling_events_total",
    ):
        assert name in series


def test_promql_parser() -> None:
    assert metric_names(
        'histogram_quantile(0.95, sum by (le, group) (rate(x_bucket{ns=~"$ns", a!="b"}[$__rate_interval])))'
    ) == {"x_bucket"}
    assert metric_names("sum(rate(a_total[5m])) / sum(rate(b_count[5m])) > 0.5 and on (pod) c") == {
        "a_total",
        "b_count",
        "c",
    }


def test_two_dashboards() -> None:
    assert [p.name for p in DASHBOARDS] == ["audioflow-operator.json", "audioflow-pipeline.json"]
    uids = [load(p)["uid"] for p in DASHBOARDS]
    assert len(set(uids)) == len(uids)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_is_sound(path: Path) -> None:
    dashboard = load(path)
    assert dashboard["title"] and dashboard["uid"] and dashboard["schemaVersion"] >= 36
    assert dashboard.get("id") is None, "exported dashboards carry no database id"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(set(ids)) == len(ids), "panel ids are unique"
    queries = [p for p in panels(dashboard) if p["type"] != "row"]
    assert queries
    for panel in queries:
        assert panel["title"] and panel["description"], panel
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] >= 0
        assert grid["x"] + grid["w"] <= 24
        refs = [t["refId"] for t in panel["targets"]]
        assert len(set(refs)) == len(refs)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_every_query_names_only_defined_metrics(path: Path) -> None:
    series = exposed_series()
    dashboard = load(path)
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            names = metric_names(target["expr"])
            assert names, f"{panel['title']}: no metric in {target['expr']}"
            assert names <= series, f"{panel['title']}: {names - series} are not defined in {METRIC_MODULES}"
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            (metric,) = re.findall(r"label_values\((\w+),", variable["definition"])
            assert metric in series


def test_dashboards_cover_what_operators_watch() -> None:
    exprs = {
        path.stem: " ".join(t["expr"] for p in panels(load(path)) for t in p.get("targets", []))
        for path in DASHBOARDS
    }
    pipeline, operator = exprs["audioflow-pipeline"], exprs["audioflow-operator"]
    # Pipeline: throughput, latency percentiles, backlog vs desired vs actual, errors, recording growth.
    assert "rate(audioflow_stream_entries_total" in pipeline and "audioflow_chunks_ingested_total" in pipeline
    for quantile in ("0.5", "0.95", "0.99"):
        assert (
            f"histogram_quantile({quantile}, sum by (le, group) (rate(audioflow_stream_handle_seconds_bucket"
            in pipeline
        )
    for gauge in (
        "audioflow_operator_backlog",
        "audioflow_operator_desired_replicas",
        "audioflow_operator_actual_replicas",
    ):
        assert gauge in pipeline
    assert 'outcome!="ack"' in pipeline and 'result="rejected"' in pipeline
    assert (
        "audioflow_recording_appended_bytes_total" in pipeline
        and "audioflow_recording_gaps_total" in pipeline
    )
    # Operator: reconciles, errors, scaling events.
    for metric in (
        "audioflow_operator_reconcile_seconds_count",
        "audioflow_operator_reconcile_errors_total",
        "audioflow_operator_scaling_events_total",
    ):
        assert metric in operator
    # Every metric the code defines is on some dashboard.
    everything = pipeline + " " + operator
    unused = {base for base in defined_metrics() if base not in everything}
    assert not unused, f"metrics on no dashboard: {unused}"
