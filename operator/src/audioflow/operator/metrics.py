"""The operator's Prometheus metrics: prefix ``audioflow_operator_``, base units, no meeting id labels.

Served on ``AUDIOFLOW_METRICS_PORT`` by :func:`audioflow.core.metrics.serve_metrics`.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from audioflow.core.metrics import HANDLER_SECONDS_BUCKETS

RECONCILE_SECONDS = Histogram(
    "audioflow_operator_reconcile_seconds",
    "Time spent in one Meeting handler call (create/update/resume, status, delete).",
    ["handler"],
    buckets=HANDLER_SECONDS_BUCKETS,
)
RECONCILE_ERRORS = Counter(
    "audioflow_operator_reconcile_errors_total",
    "Meeting handler calls that ended in an error, by handler and reason (e.g. GatewayUnavailable).",
    ["handler", "reason"],
)
AUTOSCALE_TICKS = Counter(
    "audioflow_operator_autoscale_ticks_total",
    "Autoscaler passes over the labelled Deployments, by outcome (ok, error).",
    ["outcome"],
)
BACKLOG = Gauge(
    "audioflow_operator_backlog",
    "Stream backlog (undelivered plus pending entries) the autoscaler last read for a Deployment.",
    ["deployment", "stream", "group"],
)
DESIRED_REPLICAS = Gauge(
    "audioflow_operator_desired_replicas",
    "Replicas the scaling policy asked for, per autoscaled Deployment.",
    ["deployment"],
)
ACTUAL_REPLICAS = Gauge(
    "audioflow_operator_actual_replicas",
    "Ready replicas the Deployment reported when last read (status.readyReplicas).",
    ["deployment"],
)
SCALING_EVENTS = Counter(
    "audioflow_operator_scaling_events_total",
    "Scale patches applied to Deployments, by direction (up, down).",
    ["deployment", "direction"],
)
