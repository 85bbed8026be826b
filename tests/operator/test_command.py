"""``audioflow operator`` as a process: it logs in through KUBECONFIG, answers its liveness probe and
serves its metrics, and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from typing import Any

import httpx
import pytest

from tests.operator.harness import NAMESPACE
from tests.services import free_port

pytestmark = pytest.mark.asyncio


async def test_operator_command_probes_metrics_and_sigterm(
    emulator: Any, redis_server_url: str, redis_prefix: str
) -> None:
    health, metrics = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIOFLOW_")}
    env.update(
        REDIS_URL=redis_server_url,
        AUDIOFLOW_REDIS_PREFIX=redis_prefix,
        AUDIOFLOW_NAMESPACE=NAMESPACE,
        AUDIOFLOW_HEALTH_PORT=str(health),
        AUDIOFLOW_METRICS_PORT=str(metrics),
        AUDIOFLOW_AUTOSCALE_INTERVAL_S="0.5",
        AUDIOFLOW_LOG_FORMAT="json",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "audioflow.cli", "operator", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            deadline = time.monotonic() + 20
            while True:
                try:
                    probe = await client.get(f"http://127.0.0.1:{health}/healthz")
                    if probe.status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "no liveness answer"
                assert proc.returncode is None, "the operator exited"
                await asyncio.sleep(0.2)
            assert "autoscaler" in probe.json()
            exposition = (await client.get(f"http://127.0.0.1:{metrics}/metrics")).text
            assert 'audioflow_operator_autoscale_ticks_total{outcome="ok"}' in exposition
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, output.decode()[-3000:]
    assert b'"component": "operator"' in output
