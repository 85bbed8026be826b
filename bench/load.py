"""Load generators shared by the ingest and memory sections.

``drive_gateways`` sends signed chunk uploads from ``concurrency`` asyncio lanes (one httpx client,
keep-alive), each lane a meeting of its own with increasing seqs, spread round-robin over the gateways,
for a fixed time. ``drive_raw`` does the raw work the gateway exists to do (one chunk row inserted with
the real models and SQLAlchemy session + one XADD) from the same number of threads in this process.
Both report what they did, their latencies and the CPU this process spent (the load generator shares
the machine's cores with what it loads, so its own cost is stated next to every figure).
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import psutil  # type: ignore[import-untyped]  # no stubs in the dev tools
import redis

from audioflow.core.db.engine import make_engine, make_sessionmaker, transaction
from audioflow.core.db.models import Chunk, Meeting
from audioflow.core.keys import Keys
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


# the raw work ---------------------------------------------------------------------------------------------
class RawLoop:
    """One chunk row insert (real models, a session per op as the gateway has) + one XADD, per op."""

    def __init__(self, database_url: str, redis_url: str, prefix: str, max_concurrency: int) -> None:
        self.engine = make_engine(database_url, pool_size=max_concurrency, max_overflow=0)
        self.sessions = make_sessionmaker(self.engine)
        self.redis = redis.Redis.from_url(redis_url, max_connections=max_concurrency + 2)
        self.stream = Keys(prefix + "raw:").transcribe

    def close(self) -> None:
        self.redis.close()
        self.engine.dispose()

    def _op(self, meeting_id: str, seq: int) -> None:
        with transaction(self.sessions) as session:
            session.add(
                Chunk(
                    meeting_id=meeting_id,
                    seq=seq,
                    sha256="0" * 64,
                    size_bytes=len(CHUNK),
                    data_bytes=len(CHUNK) - 44,
                    duration_s=CHUNK_SECONDS,
                )
            )
        self.redis.xadd(self.stream, {"meeting_id": meeting_id, "seq": seq})

    def run(self, *, concurrency: int, seconds: float, meeting_prefix: str) -> LoadResult:
        meetings = [f"{meeting_prefix}-{i}" for i in range(concurrency)]
        with transaction(self.sessions) as session:  # as the gateway's warm-up creates its meetings
            session.add_all(Meeting(id=m, sample_rate=16000, channels=1, bits=16) for m in meetings)
        latencies: list[float] = []
        lock = threading.Lock()
        barrier = threading.Barrier(concurrency + 1)
        deadline = [0.0]

        def lane(meeting_id: str) -> None:
            self._op(meeting_id, 0)  # warm-up: a pooled connection per lane
            barrier.wait()
            seq = 1
            while time.perf_counter() < deadline[0]:
                started = time.perf_counter()
                self._op(meeting_id, seq)
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                seq += 1

        me = psutil.Process()
        with ThreadPoolExecutor(concurrency) as pool:
            futures = [pool.submit(lane, m) for m in meetings]
            deadline[0] = time.perf_counter() + 3600  # set for real once every lane is warm
            barrier.wait()
            cpu0 = me.cpu_times()
            started = time.perf_counter()
            deadline[0] = started + seconds
            for future in futures:
                future.result()
            elapsed = time.perf_counter() - started
            cpu1 = me.cpu_times()
        return LoadResult(
            len(latencies), elapsed, latencies, cpu1.user + cpu1.system - cpu0.user - cpu0.system, 0.0
        )
