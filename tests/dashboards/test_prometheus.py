"""The Grafana dashboards against a real Prometheus (Debian's ``/usr/bin/prometheus``, ``make prometheus``).

Prometheus scrapes a running gateway, a processing and a concat worker and ``audioflow operator``
(against kmock's emulator, with a worker Deployment it autoscales from the real stream's backlog)
during a meeting; then every query of every dashboard panel must return data through its HTTP API.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from audioflow.core.keys import CONCAT_GROUP, Keys
from audioflow.core.scaling import ScalingPolicy
from audioflow.core.streams.queues import enqueue, ensure_group
from audioflow.workers.simulate import cut_chunks, load_speech
from tests.chart.test_dashboards import DASHBOARDS, load, panels
from tests.integration.stack import Stack, make_stack
from tests.operator.harness import (
    DEPLOYMENTS,
    MEETINGS,
    NAMESPACE,
    autoscale_annotations,
    create,
    deployment_body,
    meeting_body,
    stored,
)
from tests.services import free_port

pytestmark = pytest.mark.timeout(120)

PROMETHEUS = Path("/usr/bin/prometheus")
MEETING = "dashboards"

# Grafana's variables as the dashboards would see them here: the namespace label comes from the
# scrape config (as the ServiceMonitor's relabelling adds it), ranges cover a few 1 s scrapes.
GRAFANA_VARIABLES = {
    "namespace": NAMESPACE,
    "__rate_interval": "1m",
    "__interval": "1s",
    "__interval_ms": "1000",
    "__range": "1m",
    "__range_s": "60",
}


def grafana_to_promql(expr: str) -> str:
    """Substitute ``$name``, ``${name}`` and ``${name:format}``; an unknown variable is an error."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in GRAFANA_VARIABLES:
            raise AssertionError(f"no test value for Grafana variable ${name} in {expr}")
        return GRAFANA_VARIABLES[name]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", value, expr)


def dashboard_queries() -> list[tuple[str, str]]:
    """(dashboard / panel / refId, PromQL) for every target of every panel of every dashboard."""
    found = []
    for path in DASHBOARDS:
        for panel in panels(load(path)):
            for target in panel.get("targets", []):
                where = f"{path.stem} / {panel['title']} / {target['refId']}"
                found.append((where, grafana_to_promql(target["expr"])))
    return found


def test_grafana_variables_are_substituted() -> None:
    assert grafana_to_promql('rate(x{namespace=~"$namespace"}[$__rate_interval])') == (
        f'rate(x{{namespace=~"{NAMESPACE}"}}[1m])'
    )
    assert grafana_to_promql('x{a="${namespace:regex}"}') == f'x{{a="{NAMESPACE}"}}'
    assert len(dashboard_queries()) >= 20


@contextlib.contextmanager
def prometheus(workdir: Path, targets: dict[str, int]) -> Iterator[str]:
    """Prometheus on its own 127.0.0.1 port scraping ``targets`` (job -> port) every second;
    stopped on exit whatever happened. Yields its base URL."""
    assert PROMETHEUS.exists(), f"{PROMETHEUS} is missing: run `make prometheus` (Debian package prometheus)"
    workdir.mkdir()
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": job,
                "static_configs": [{"targets": [f"127.0.0.1:{port}"], "labels": {"namespace": NAMESPACE}}],
            }
            for job, port in targets.items()
        ],
    }
    (workdir / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    port = free_port()
    with (workdir / "prometheus.log").open("wb") as log:
        proc = subprocess.Popen(
            [
                str(PROMETHEUS),
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            assert proc.poll() is None, (workdir / "prometheus.log").read_text(errors="replace")
            assert time.monotonic() < deadline, "Prometheus did not become ready"
            time.sleep(0.2)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def query(url: str, promql: str) -> list[Any]:
    response = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", f"{promql}: {body}"
    result: list[Any] = body["data"]["result"]
    return result


def unhealthy_targets(url: str) -> list[str]:
    active = httpx.get(f"{url}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
    return [f"{t['labels']['job']}: {t['health']} {t['lastError']}" for t in active if t["health"] != "up"]


def start_operator(
    stack: Stack, workdir: Path, redis_url: str, prefix: str, metrics: int
) -> subprocess.Popen[bytes]:
    """``audioflow operator`` as a process, logged in to the emulator through KUBECONFIG."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIOFLOW_")}
    env.update(
        REDIS_URL=redis_url,
        AUDIOFLOW_REDIS_PREFIX=prefix,
        AUDIOFLOW_NAMESPACE=NAMESPACE,
        AUDIOFLOW_GATEWAY_URL=stack.base_url,
        AUDIOFLOW_ADMIN_TOKEN=stack.admin_token,
        AUDIOFLOW_HEALTH_PORT=str(free_port()),
        AUDIOFLOW_METRICS_PORT=str(metrics),
        AUDIOFLOW_AUTOSCALE_INTERVAL_S="0.5",
        AUDIOFLOW_STATUS_INTERVAL_S="1",
        AUDIOFLOW_RETRY_DELAY_S="1",
    )
    with (workdir / "operator.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "audioflow.cli", "operator"], env=env, stdout=log, stderr=subprocess.STDOUT
        )


# The dashboards' scaling panels need the operator to scale up and back within the test.
QUICK_POLICY = ScalingPolicy(
    min_replicas=1, max_replicas=4, target_backlog=2, scale_down_window_s=1, cooldown_s=1
)


def scaled_replicas(kmock: Any) -> int:
    deployment = stored(kmock, DEPLOYMENTS, "processing")
    return 0 if deployment is None else int(deployment["spec"]["replicas"])


async def until(what: str, check: Any, within: float, logs: Any) -> Any:
    """Poll the blocking ``check`` in a thread (the emulator runs in this loop) until truthy."""
    deadline = time.monotonic() + within
    while True:
        value = await asyncio.to_thread(check)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}\n{logs()}")
        await asyncio.sleep(0.3)


@pytest.mark.asyncio
async def test_every_dashboard_query_returns_data_from_a_real_prometheus(
    emulator: Any, tmp_path: Path, redis_server_url: str, redis_prefix: str
) -> None:
    keys = Keys(redis_prefix)
    (tmp_path / "stack").mkdir()
    stack = make_stack(tmp_path / "stack", redis_server_url, f"sqlite:///{tmp_path}/db.sqlite", redis_prefix)
    ports = {"gateway": stack.port, "processing": free_port(), "concat": free_port(), "operator": free_port()}
    operator: subprocess.Popen[bytes] | None = None

    def logs() -> str:
        operator_log = (tmp_path / "operator.log").read_text(errors="replace")[-4000:]
        return f"{stack.logs()}\n==== operator\n{operator_log}"

    # A concat entry held by a consumer that died: the concat worker reclaims it, and it fails
    # (no meeting), so the "failed entries" and "reclaimed" panels have something to show.
    with redis.Redis.from_url(redis_server_url, decode_responses=True) as client:
        ensure_group(client, keys.concat, CONCAT_GROUP)
        enqueue(client, keys.concat, {"junk": "a dead consumer's entry"})
        client.xreadgroup(CONCAT_GROUP, "dead-consumer", {keys.concat: ">"}, count=1)

    with prometheus(tmp_path / "prometheus", ports) as url:
        try:
            await asyncio.to_thread(stack.start_api)
            # The worker Deployment the operator autoscales from the real transcribe stream, and two
            # Meetings: one it registers with the gateway, one with an unusable spec (an error).
            deployment = deployment_body(
                "processing", 1, autoscale_annotations(keys.transcribe, QUICK_POLICY)
            )
            deployment["status"] = {"replicas": 1, "readyReplicas": 1}
            await create(emulator, DEPLOYMENTS, deployment)
            await create(emulator, MEETINGS, meeting_body(MEETING, {"meetingId": MEETING}))
            await create(emulator, MEETINGS, meeting_body("broken", {"meetingId": "Not A Valid Id!"}))
            operator = start_operator(stack, tmp_path, redis_server_url, redis_prefix, ports["operator"])
            await until(
                "the operator to register the meeting",
                lambda: stack.get(f"/v1/meetings/{MEETING}").status_code == 200,
                30,
                logs,
            )

            # The meeting's chunks arrive before any processing worker runs: a backlog the operator
            # scales the Deployment up for; then the workers start and drain it.
            fmt, pcm = load_speech()
            for seq, body in enumerate(cut_chunks(fmt, pcm, 1.0, 6)):
                assert await asyncio.to_thread(stack.send, MEETING, seq, body) == 201
            rejected = await asyncio.to_thread(
                stack.put_chunk, MEETING, 99, b"not a wav", content_type="text/plain"
            )
            assert rejected.status_code >= 400
            await until(
                "the operator to scale the Deployment up",
                lambda: scaled_replicas(emulator) > 1,
                15,
                logs,
            )
            for kind in ("processing", "concat"):
                stack.start_worker(kind, {"AUDIOFLOW_METRICS_PORT": str(ports[kind])})
            assert (await asyncio.to_thread(stack.post, f"/v1/meetings/{MEETING}/end")).status_code == 200
            status = await asyncio.to_thread(stack.wait_completed, MEETING, 60)
            assert status["phase"] == "completed", status

            # Every target scraped, then every panel query answered (rates need two samples after
            # the last new series appeared: retried for a few scrape intervals).
            await until(
                "every target up", lambda: not unhealthy_targets(url), 15, lambda: unhealthy_targets(url)
            )
            queries = dashboard_queries()
            empty: list[str] = []
            deadline = time.monotonic() + 15
            while True:
                results = await asyncio.gather(*(asyncio.to_thread(query, url, q) for _, q in queries))
                empty = [
                    f"{where}: {q}" for (where, q), result in zip(queries, results, strict=True) if not result
                ]
                if not empty or time.monotonic() > deadline:
                    break
                await asyncio.sleep(1)
            assert not empty, "dashboard queries that returned nothing:\n" + "\n".join(empty)
            assert operator.poll() is None, logs()
        finally:
            if operator is not None and operator.poll() is None:
                operator.send_signal(signal.SIGTERM)
                try:
                    await asyncio.to_thread(operator.wait, 20)
                except subprocess.TimeoutExpired:
                    operator.kill()
                    operator.wait()
            await asyncio.to_thread(stack.stop)
