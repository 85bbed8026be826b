"""Ingest at 64 concurrent senders, driven by wrk: ``python -m bench.ingest_wrk``.

The seed comparison's method (issue 14): wrk, one thread, 64 connections, a warm-up, then a timed run,
each request a new (meeting, seq) over 64 meetings. Measured, one after the other on the same services:

- **baseline**: the seed's webhook work in Python (``bench.seed_baseline``: upsert + XADD + SELECT +
  log PUBLISH per request, a bare ASGI app on uvicorn), with the same JSON bodies;
- **webhook**: ``POST /webhooks/chunk`` ``{meetingId, seq, url}``, the gateway fetching a 32 KB WAV from a
  ``file:`` URL under ``AUDIOFLOW_INGEST_ROOT``;
- **put**: ``PUT /v1/meetings/{id}/chunks/{seq}`` with the same WAV as body;
- **retry**: the webhook, every timed request a delivery already accepted, sent again as a platform
  retries one whose answer it missed (same webhook-id, body and signature; answered 200). Its warm-up
  sends new chunks for as long as the timed run, and the timed run resends those, in order, from the
  start again if it gets through them;
- **first**: the webhook, every request the first chunk of a meeting of its own (meetings starting at
  once, as at the top of an hour);
- **seed** (with ``--seed DIR``): the seed's own Node backend (``services/backend``, run by its own
  ``ts-node`` as its ``npm start`` does) from a checkout of it in ``DIR``, with bodies
  ``{meetingId, seq, path}``, on a Redis of its own (it runs ``FLUSHALL`` when it starts) and a fresh
  database. Its code is not part of this repository: the checkout is the caller's;

for ``AUDIOFLOW_FSYNC`` off and on and 1 or N gateway processes (``audioflow api --workers N``). Every
request is signed in advance, enough for the run at ``CEILING_RATE`` (a run that runs out is refused; the
signatures' tolerance is 5 minutes, so the file is written just before its run). The CPU the loaded
processes (gateway or baseline, children included) used during the timed run, divided by the requests, is
their CPU per chunk. wrk runs on the same 2 cores; its own CPU is reported too. With ``--also-src``,
another tree's gateway is measured beside this one, run by run; the two take turns at going first, after
one unrecorded run that warms the services up.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil  # type: ignore[import-untyped]  # no stubs in the dev tools
from sqlalchemy import make_url

from audioflow.core.signing import sign, sign_chunk
from bench.common import BENCH_DIR, BenchConfig, Unmeasured, md_table
from bench.env import bench_stack
from tests import machine as where
from tests.factories import tone_pcm, wav_bytes
from tests.services import (
    embedded_redis,
    free_port,
    fresh_postgres_database,
    local_or_embedded,
    wait_for_port,
)

CHUNK = wav_bytes(tone_pcm(1.0))  # 1 s at 16 kHz mono 16-bit: 32,044 bytes, the seed comparison's size
LUA = BENCH_DIR / "wrk_ingest.lua"
MEETINGS = 64
GATEWAY = ("webhook", "put", "retry", "first")  # the kinds that run audioflow's gateway
WEBHOOK = ("webhook", "retry", "first")  # of those, the ones sent to its JSON webhook
# Requests signed per second of a run: over any rate measured here (the seed's best, 5,636/s), so a run
# never reaches the end of its list. If one does, wrk would resend (duplicates) and the run is refused.
CEILING_RATE = 8_000


@dataclass(frozen=True)
class Run:
    what: str  # baseline | seed | webhook | put
    fsync: bool
    workers: int
    requests: int  # accepted (2xx)
    seconds: float
    p50_ms: float
    p99_ms: float
    created: int  # the answers its kind expects: 201 (new), 200 for the baseline, the seed and retries
    other: int  # any other answer, socket errors included
    server_cpu_ms: float  # per request
    server_sys_ms: float  # of which in the kernel
    wrk_cpu_ms: float  # per request

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def lines_for(seconds: float) -> int:
    """Requests to sign for ``seconds`` of sending."""
    return int(seconds * CEILING_RATE) + 1


def write_requests(path: Path, lines: int, what: str, secret: str, prefix: str, chunk_url: str) -> None:
    """``lines`` signed requests, request i for meeting ``i % 64`` and seq ``i // 64`` (``first``: meeting
    ``i``, seq 0)."""
    with path.open("w") as out:
        for i in range(lines):
            if what == "first":
                meeting, seq = f"{prefix}-{i}", 0
            else:
                meeting, seq = f"{prefix}-{i % MEETINGS}", i // MEETINGS
            msg_id = f"msg_{prefix}_{i}"
            if what == "put":
                signed = sign_chunk(secret, meeting, seq, CHUNK, msg_id=msg_id)
                line = ["PUT", f"/v1/meetings/{meeting}/chunks/{seq}", "audio/wav", "@"]
            else:
                where_ = "path" if what == "seed" else "url"  # the seed's field; the baseline takes either
                body = json.dumps(
                    {"meetingId": meeting, "seq": seq, where_: chunk_url}, separators=(",", ":")
                )
                signed = sign(secret, body.encode(), msg_id=msg_id)
                path_ = "/webhooks/chunk" if what in WEBHOOK else "/webhook/chunk"
                line = ["POST", path_, "application/json", body]
            method, target, ctype, body_ = line
            out.write(
                "\t".join(
                    [method, target, ctype, signed.webhook_id, str(signed.timestamp), signed.signature, body_]
                )
                + "\n"
            )


def _cpu(pids: list[int]) -> tuple[float, float]:
    """User and system CPU seconds of these processes and their children."""
    user = system = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc = psutil.Process(pid)
            for p in [proc, *proc.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    t = p.cpu_times()
                    user, system = user + t.user, system + t.system
    return user, system


def wrk(
    url: str,
    requests_file: Path,
    chunk_file: Path,
    first: int,
    last: int,
    seconds: float,
    c: int,
    close: bool = False,
    resend: bool = False,
) -> dict[str, float]:
    """One wrk run over lines (first, last] of the file; its JSON summary plus its own CPU seconds. With
    ``close``, a new connection per request. A run that reached the end of those lines is refused unless
    ``resend``: the script resends from the first, and their answers (duplicates) measure another path."""
    cmd = [
        "wrk", "-t1", f"-c{c}", f"-d{seconds:g}s", "--timeout", "10s", "-s", str(LUA), url,
        "--", str(requests_file), str(first), str(last), str(chunk_file), "close" if close else "keep",
    ]  # fmt: skip
    before = psutil.Process().cpu_times()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    after = psutil.Process().cpu_times()
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if done.returncode != 0 or line is None:
        raise Unmeasured(f"wrk failed ({done.returncode}): {done.stderr.strip()[:300]} {done.stdout[-300:]}")
    summary: dict[str, float] = json.loads(line.removeprefix("WRKJSON "))
    if summary["resent"] and not resend:
        raise Unmeasured(
            f"wrk ran out of the {last - first} requests signed for the run and resent "
            f"{summary['resent']:.0f}: raise CEILING_RATE"
        )
    other = next((x for x in done.stdout.splitlines() if x.startswith("WRKOTHER ")), "").removeprefix(
        "WRKOTHER "
    )
    if summary["cother"]:
        print(
            f"wrk: {summary['cother']:.0f} answers neither 201 nor 200, the first: {other}", file=sys.stderr
        )
    summary["wrk_cpu_s"] = (
        after.children_user + after.children_system - before.children_user - before.children_system
    )
    return summary


@contextlib.contextmanager
def process(
    args: list[str], env: dict[str, str], log: Path, port: int, cwd: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
    try:
        wait_for_port(port, timeout=60)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def seed_command(seed_dir: Path) -> list[str]:
    """The seed backend's ``npm start`` (``ts-node src/index.ts``) without npm in between; its packages
    are installed from its lockfiles first if they are not."""
    for package in (seed_dir / "common", seed_dir / "services" / "backend"):
        if not (package / "node_modules").is_dir():
            subprocess.run(
                ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=package, check=True
            )
    backend = seed_dir / "services" / "backend"
    return [str(backend / "node_modules" / ".bin" / "ts-node"), "src/index.ts"]


def seed_env(port: int, database_url: str, redis_url: str) -> dict[str, str]:
    """The seed's settings (``PG*`` and ``REDIS_URL``, as its ``.env`` names them) for this run's database."""
    url = make_url(database_url)
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PG", "REDIS_", "DATABASE_"))},
        "PORT": str(port),
        "PGHOST": url.host or "127.0.0.1",
        "PGPORT": str(url.port or 5432),
        "PGUSER": url.username or "postgres",
        "PGPASSWORD": url.password or "",
        "PGDATABASE": url.database or "postgres",
        "REDIS_URL": redis_url,
        "FORCE_COLOR": "0",
    }


@contextlib.contextmanager
def _profiled(into: Path | None, pid: int, name: str, seconds: float) -> Iterator[None]:
    """With ``into``: py-spy samples the server (children included) meanwhile, into collapsed stacks."""
    if into is None:
        yield
        return
    into.mkdir(parents=True, exist_ok=True)
    cmd = ["py-spy", "record", "--subprocesses", "--gil", "--format", "raw", "-r", "200"]
    spy = subprocess.Popen([*cmd, "-d", f"{seconds:.0f}", "-p", str(pid), "-o", str(into / f"{name}.txt")])
    try:
        yield
    finally:
        spy.wait(30)


def measure(
    cfg: BenchConfig,
    what: str,
    *,
    fsync: bool,
    workers: int,
    seconds: float,
    warmup: float,
    connections: int,
    close: bool = False,
    profile: Path | None = None,
    src: Path | None = None,
    seed_dir: Path | None = None,
) -> Run:
    # Every sender's upload is received at once (the default cap, 16, answers the rest 503 uploads_busy).
    env = {
        "AUDIOFLOW_FSYNC": "true" if fsync else "false",
        "AUDIOFLOW_MAX_UPLOADS_IN_FLIGHT": str(connections),
    }
    with (
        tempfile.TemporaryDirectory(prefix="afbench-wrk-") as tmp,
        bench_stack(cfg, "wrk", **env) as stack,
        contextlib.ExitStack() as later,
    ):
        work = Path(tmp)
        ingest_root = work / "ingest"
        ingest_root.mkdir()
        chunk_file = ingest_root / "chunk.wav"
        chunk_file.write_bytes(CHUNK)
        port = free_port()
        env = {**stack.env, "AUDIOFLOW_INGEST_ROOT": str(ingest_root)}
        cwd: Path | None = None
        if src is not None:  # the gateway's code from another tree (say, an older commit's)
            env["PYTHONPATH"] = f"{src / 'api' / 'src'}{os.pathsep}{src / 'core' / 'src'}"
        if what == "baseline":
            args = [sys.executable, "-m", "bench.seed_baseline", "--port", str(port)]
        elif what == "seed":
            if seed_dir is None:
                raise Unmeasured("seed: give a checkout of the seed with --seed")
            # Services of its own: it flushes its Redis when it starts, and makes a `chunks` table of
            # another shape than audioflow's (only if none exists).
            redis_url = later.enter_context(embedded_redis())
            database_url = later.enter_context(fresh_postgres_database(cfg.postgres_url))
            args, cwd = seed_command(seed_dir), seed_dir / "services" / "backend"
            env = seed_env(port, database_url, redis_url)
        else:
            args = [sys.executable, "-m", "audioflow.cli", "api", "--port", str(port)]
            if workers > 1:
                args += ["--workers", str(workers)]
        requests_file = work / "requests.tsv"
        with process(args, env, work / "server.log", port, cwd) as proc:
            prefix = f"{what[:2]}{uuid.uuid4().hex[:6]}"
            retry = what == "retry"
            warmup = max(warmup, seconds) if retry else warmup  # what the retries resend
            warm_lines, timed_lines = lines_for(warmup), lines_for(seconds)
            write_requests(
                requests_file, warm_lines + timed_lines + connections, what, stack.secret, prefix,
                chunk_file.as_uri(),
            )  # fmt: skip
            url = f"http://127.0.0.1:{port}"
            warm = wrk(url, requests_file, chunk_file, 0, warm_lines, warmup, connections, close)
            if retry:  # the deliveries the warm-up had answered (those in flight at its end may not be)
                first, last = 0, int(warm["c201"])
            else:  # past what the warm-up sent, in-flight ones too
                first = int(warm["requests"]) + connections
                last = first + timed_lines
            cpu0 = _cpu([proc.pid])
            with _profiled(profile, proc.pid, f"{what}-fsync{int(fsync)}-x{workers}", seconds):
                timed = wrk(
                    url, requests_file, chunk_file, first, last, seconds, connections, close, resend=retry
                )
            cpu1 = _cpu([proc.pid])
            # Refusals (say 503 when a cap is reached) are counted apart; rates and CPU are per accepted.
            n = int(timed["c201"] + timed["c200"])
            if n == 0:
                log = (work / "server.log").read_text()[-2000:]
                raise Unmeasured(f"{what}: nothing accepted: {timed}\n{log}")
        label = what + (", a connection per request" if close else "")
        return Run(
            label if src is None else f"{label} ({src.name})",
            fsync,
            workers,
            n,
            timed["duration_us"] / 1e6,
            timed["p50_us"] / 1000,
            timed["p99_us"] / 1000,
            int(timed["c200"] if what in ("baseline", "seed", "retry") else timed["c201"]),
            int(timed["cother"] + timed["socket_errors"]),
            (sum(cpu1) - sum(cpu0)) / n * 1000,
            (cpu1[1] - cpu0[1]) / n * 1000,
            timed["wrk_cpu_s"] / n * 1000,
        )


@contextlib.contextmanager
def scratch_space(kind: str) -> Iterator[str]:
    """Put the runs' files (chunks, databases) on a journaled ext4 of their own, loop-mounted, unless
    ``kind`` is ``tmp`` or this is not root; yields a note saying where they went.

    Why: this machine's root file system is an ext4 without a journal, and there ext4 skips, at every
    inode it allocates, the inodes deleted in the last minute or more (``recently_deleted()``, checked
    only without a journal), reading each one's dtime. A run that follows one which deleted its 30,000
    chunk files then spent over a third of the gateway's CPU in that scan, and rates moved by a quarter
    from run to run with the deletion history. A fresh journaled file system measures the gateway."""
    can_mount = os.geteuid() == 0 and shutil.which("mkfs.ext4") is not None
    if kind == "tmp" or (kind == "auto" and not can_mount):
        yield f"files in {tempfile.gettempdir()} (the system temp folder)"
        return
    if not can_mount:
        raise Unmeasured("--scratch journaled needs root and mkfs.ext4")
    with tempfile.TemporaryDirectory(prefix="afbench-scratch-") as holder:
        image, mount = Path(holder) / "fs.img", Path(holder) / "fs"
        Path(holder).chmod(0o755)
        mount.mkdir()
        with image.open("wb") as f:
            f.truncate(16 << 30)  # sparse: blocks are taken only as written
        subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
        subprocess.run(["mount", "-o", "loop", str(image), str(mount)], check=True)
        mount.chmod(0o1777)  # PostgreSQL runs as a user of its own: it must reach its folder
        before = tempfile.tempdir
        tempfile.tempdir = str(mount)
        try:
            yield "files on a fresh journaled ext4 (a 16 GiB loop-mounted image), not the root file system"
        finally:
            tempfile.tempdir = before
            subprocess.run(["umount", "-l", str(mount)], check=False)


def table(runs: list[Run]) -> str:
    def ratio(r: Run, to: str) -> str:
        found = next((b for b in runs if b.what.startswith(to) and b.fsync == r.fsync), None)
        return "-" if found is None else f"{r.rate / found.rate:.2f}"

    with_seed = any(r.what.startswith("seed") for r in runs)
    rows = []
    for r in runs:
        rows.append(
            [
                r.what,
                "on" if r.fsync else "off",
                r.workers,
                f"{r.rate:,.0f}",
                f"{r.p50_ms:.1f}",
                f"{r.p99_ms:.1f}",
                f"{r.server_cpu_ms:.2f} ({r.server_sys_ms:.2f})",
                f"{r.wrk_cpu_ms:.3f}",
                ratio(r, "baseline"),
                *([ratio(r, "seed")] if with_seed else []),
                f"{r.created:,}",
                r.other,
            ]
        )
    return md_table(
        [
            "what", "fsync", "processes", "accepted/s", "p50 ms", "p99 ms",
            "server CPU ms per accepted (kernel)", "wrk CPU ms per accepted", "accepted/s / baseline",
            *(["accepted/s / seed"] if with_seed else []),
            "answered as expected (201, or 200: baseline, seed, retry)", "refused (other answers)",
        ],
        rows,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest_wrk", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--what", default="baseline,webhook,put", help="of baseline, seed, webhook, put, retry, first"
    )
    parser.add_argument("--fsync", default="off", help="off, on, or off,on")
    parser.add_argument("--workers", default="1", help="gateway processes, e.g. 1,2")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--close",
        action="store_true",
        help="a new connection per request (Connection: close), not keep-alive",
    )
    parser.add_argument("--out", type=Path, help="also write the table (Markdown) here")
    parser.add_argument("--profile", type=Path, help="py-spy the servers into this folder (slows them)")
    parser.add_argument(
        "--scratch",
        choices=["auto", "journaled", "tmp"],
        default="auto",
        help="where the runs' files go: a journaled ext4 of the run's own (loop-mounted; root only), the "
        "system temp folder, or auto (journaled when root can mount one)",
    )
    parser.add_argument(
        "--seed",
        type=Path,
        help="a checkout of the seed (github.com/JoeAxelrod/audio-chunk-flow-system): measure its own Node "
        "backend too (`seed`, added to --what)",
    )
    parser.add_argument(
        "--also-src",
        type=Path,
        help="also measure the gateway from this tree (e.g. `git archive` of an older commit), run by run",
    )
    args = parser.parse_args(argv)
    if args.seed is not None and "seed" not in args.what.split(","):
        args.what = f"seed,{args.what}"
    runs: list[Run] = []
    load0 = os.getloadavg()
    started = where.now()
    with scratch_space(args.scratch) as scratch_note, local_or_embedded() as (redis_url, postgres_url, notes):
        notes.insert(0, scratch_note)
        cfg = BenchConfig(redis_url=redis_url, postgres_url=postgres_url)
        common = {
            "seconds": args.seconds,
            "warmup": args.warmup,
            "connections": args.connections,
            "close": args.close,
        }
        # Not recorded: the first run on fresh services looked up to a fifth slower than the same code's
        # later runs, twice (bench/RESULTS.md), and whichever tree always went first would carry that.
        first = args.what.split(",")[0]
        warm = {**common, "seconds": min(args.seconds, 5.0)}
        measure(cfg, first, fsync=False, workers=1, seed_dir=args.seed, **warm)
        pairs = 0
        for fsync in [f == "on" for f in args.fsync.split(",")]:
            for what in args.what.split(","):
                gateway = what in GATEWAY
                for workers in [int(w) for w in args.workers.split(",")] if gateway else [1]:
                    trees = [None] if not gateway or args.also_src is None else [args.also_src, None]
                    if len(trees) == 2:  # the two trees take turns at going first
                        trees, pairs = trees[:: 1 if pairs % 2 == 0 else -1], pairs + 1
                    for src in trees:
                        run = measure(
                            cfg, what, fsync=fsync, workers=workers, profile=args.profile, src=src,
                            seed_dir=args.seed, **common,
                        )  # fmt: skip
                        runs.append(run)
                        print(f"{run} (load {os.getloadavg()[0]:.2f})", file=sys.stderr, flush=True)
                        time.sleep(1)
    load1 = os.getloadavg()
    retry_note = (
        f" (retry: {max(args.warmup, args.seconds):g} s of new chunks first, then those sent again)"
        if "retry" in args.what.split(",")
        else ""
    )
    text = (
        f"{started}, wrk -t1 -c{args.connections}{' (Connection: close)' if args.close else ''}, "
        f"{args.warmup:g} s warm-up then {args.seconds:g} s{retry_note}; "
        f"{'; '.join(notes)}; load average {' / '.join(f'{x:.2f}' for x in load0)} at start, "
        f"{' / '.join(f'{x:.2f}' for x in load1)} at the end.\n\n{table(runs)}\n"
    )
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
