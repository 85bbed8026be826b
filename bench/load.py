"""The memory section's ingest load: ``drive_gateways`` sends signed chunk uploads from ``concurrency``
asyncio lanes (one httpx client, keep-alive), each lane a meeting of its own with increasing seqs, spread
round-robin over the gateways, for a fixed time. It reports what it did, its latencies and the CPU this
process spent (the load generator shares the machine's cores with what it loads). Speed is measured with
wrk instead (``bench.ingest``, ``bench.ingest_wrk``): a Python client spends more CPU per request than
the gateway does.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx
import psutil  # type: ignore[import-untyped]  # no stubs in the dev tools

from audioflow.core.signing import sign_chunk
from bench.common import Unmeasured, percentile
from tests.factories import tone_pcm, wav_bytes

CHUNK_SECONDS = 0.5
CHUNK = wav_bytes(tone_pcm(CHUNK_SECONDS))  # 16 kHz mono 16-bit: 16,044 bytes


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    latencies: list[float]  # seconds, one per request
    client_cpu_s: float  # CPU this (load generating) process used
    server_cpu_s: float  # CPU the loaded processes used (0 for the raw loop: it is this process)

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    def p(self, q: float) -> float:
        return percentile(self.latencies, q)


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        times = psutil.Process(pid).cpu_times()
        total += times.user + times.system + times.children_user + times.children_system
    return total


# the gateway ----------------------------------------------------------------------------------------------
async def _lanes(
    urls: list[str], secret: str, concurrency: int, seconds: float, meeting_prefix: str, first_seq: int
) -> tuple[int, float, list[float]]:
    latencies: list[float] = []
    seqs = [first_seq] * concurrency  # each lane's next seq, carried from the warm-up into the timing
    limits = httpx.Limits(max_connections=concurrency * len(urls), max_keepalive_connections=None)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:

        async def lane(index: int, deadline: float | None, count: int | None) -> None:
            sent = 0
            while (deadline is None or time.perf_counter() < deadline) and (count is None or sent < count):
                seq = seqs[index]
                meeting_id = f"{meeting_prefix}-{index}"
                url = f"{urls[(index + seq) % len(urls)]}/v1/meetings/{meeting_id}/chunks/{seq}"
                signed = sign_chunk(secret, meeting_id, seq, CHUNK)
                headers = {"content-type": "audio/wav", **signed.as_dict()}
                started = time.perf_counter()
                response = await client.put(url, content=CHUNK, headers=headers)
                latencies.append(time.perf_counter() - started)
                if response.status_code != 201:
                    raise Unmeasured(
                        f"upload to {url} answered {response.status_code}: {response.text[:200]}"
                    )
                seqs[index], sent = seq + 1, sent + 1

        # Warm-up outside the timing: each lane's first chunk creates its meeting, and every connection
        # to every gateway is opened.
        await asyncio.gather(*(lane(i, None, len(urls)) for i in range(concurrency)))
        latencies.clear()
        started = time.perf_counter()
        await asyncio.gather(*(lane(i, started + seconds, None) for i in range(concurrency)))
        return len(latencies), time.perf_counter() - started, latencies


def drive_gateways(
    urls: list[str], secret: str, pids: list[int], *, concurrency: int, seconds: float, meeting_prefix: str
) -> LoadResult:
    """Upload for ``seconds`` from ``concurrency`` lanes; every answer must be 201 (else Unmeasured)."""
    me = psutil.Process()
    cpu0, server0 = me.cpu_times(), cpu_seconds(pids)
    count, elapsed, latencies = asyncio.run(
        _lanes(urls, secret, concurrency, seconds, meeting_prefix, first_seq=0)
    )
    cpu1, server1 = me.cpu_times(), cpu_seconds(pids)
    # The CPU figures include the warm-up requests; scale them to the timed ones.
    share = count / (count + concurrency * len(urls))
    return LoadResult(
        count,
        elapsed,
        latencies,
        client_cpu_s=(cpu1.user + cpu1.system - cpu0.user - cpu0.system) * share,
        server_cpu_s=(server1 - server0) * share,
    )
