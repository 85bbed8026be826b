"""fake-zoom: sends real speech (the bundled fixture, spoken by flite's slt voice) as signed WAV chunks.

It cuts the fixture into chunks of the requested length (looping it when more chunks are asked for),
and can shuffle, duplicate and drop chunks, run several meetings at once and pace the sending.
"""

from __future__ import annotations

import argparse
import random
import secrets
import sys
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import httpx

from audioflow.core.api_paths import chunk_path, meeting_path
from audioflow.core.settings import Settings
from audioflow.core.signing import sign_chunk
from audioflow.core.wav import AudioFormat, canonical_header, parse_wav, pcm_view

FIXTURES = resources.files("audioflow.workers") / "fixtures"
RETRIES = 6


def fixture_path() -> Path:
    return Path(str(FIXTURES / "speech.wav"))


def reference_text() -> str:
    return (FIXTURES / "speech.txt").read_text()


def load_speech() -> tuple[AudioFormat, bytes]:
    data = fixture_path().read_bytes()
    info = parse_wav(data)
    return info.format, bytes(pcm_view(data, info))


def cut_chunks(fmt: AudioFormat, pcm: bytes, chunk_seconds: float, count: int | None = None) -> list[bytes]:
    """Complete WAV files of ``chunk_seconds`` each; the last one of a single pass may be shorter."""
    step = max(1, round(chunk_seconds * fmt.sample_rate)) * fmt.block_align
    pieces = [pcm[i : i + step] for i in range(0, len(pcm), step)]
    if count is not None:
        pieces = [pieces[i % len(pieces)] for i in range(count)]
    return [canonical_header(fmt, len(piece)) + piece for piece in pieces]


@dataclass(frozen=True)
class Delivery:
    meeting_id: str
    seq: int
    body: bytes


def plan(
    meeting_ids: list[str],
    chunks: list[bytes],
    *,
    shuffle: bool,
    duplicates: int,
    drop: set[int],
    rng: random.Random,
) -> list[Delivery]:
    """What to send, in order: every meeting's chunks minus dropped seqs, plus duplicates, maybe shuffled."""
    deliveries = [
        Delivery(m, seq, body) for m in meeting_ids for seq, body in enumerate(chunks) if seq not in drop
    ]
    if shuffle:
        rng.shuffle(deliveries)
    for _ in range(duplicates if deliveries else 0):
        original = rng.choice(deliveries)
        position = rng.randint(deliveries.index(original) + 1, len(deliveries))
        deliveries.insert(position, original)
    return deliveries


def send(client: httpx.Client, base_url: str, secret: str, delivery: Delivery) -> int:
    """PUT one chunk, signed; retried with backoff on 503, 429 and connection errors. Returns the status."""
    url = base_url.rstrip("/") + chunk_path(delivery.meeting_id, delivery.seq)
    delay = 0.25
    for attempt in range(RETRIES):
        signed = sign_chunk(secret, delivery.meeting_id, delivery.seq, delivery.body)
        headers = {"content-type": "audio/wav", **signed.as_dict()}
        try:
            response = client.put(url, content=delivery.body, headers=headers)
        except httpx.TransportError:
            if attempt == RETRIES - 1:
                raise
        else:
            if response.status_code not in (429, 503):
                return response.status_code
            delay = float(response.headers.get("retry-after", delay))
        time.sleep(delay)
        delay = min(delay * 2, 5.0)
    return response.status_code


def run_simulation(args: argparse.Namespace, settings: Settings) -> int:
    if settings.webhook_secret is None:
        print(
            "audioflow simulate: set AUDIOFLOW_WEBHOOK_SECRET (the gateway's webhook secret)", file=sys.stderr
        )
        return 2
    secret = settings.webhook_secret.get_secret_value()
    rng = random.Random(args.seed)
    fmt, pcm = load_speech()
    chunks = cut_chunks(fmt, pcm, args.chunk_seconds, args.chunks)
    base = args.meeting or f"sim-{secrets.token_hex(4)}"
    meeting_ids = [base] if args.meetings == 1 else [f"{base}-{i}" for i in range(args.meetings)]
    deliveries = plan(
        meeting_ids, chunks, shuffle=args.shuffle, duplicates=args.duplicates, drop=set(args.drop), rng=rng
    )
    rate = args.rate or (len(meeting_ids) / args.chunk_seconds if args.realtime else 0.0)
    total, started, failures = len(deliveries), time.monotonic(), 0
    counts: dict[int, int] = {}
    print(
        f"audioflow simulate: {len(meeting_ids)} meeting(s) {', '.join(meeting_ids)}; {total} uploads of "
        f"{len(chunks)} chunks x {args.chunk_seconds:g} s to {args.url}",
        file=sys.stderr,
    )
    with httpx.Client(timeout=30) as client:
        for index, delivery in enumerate(deliveries, start=1):
            if rate:
                time.sleep(max(0.0, started + (index - 1) / rate - time.monotonic()))
            status = send(client, args.url, secret, delivery)
            counts[status] = counts.get(status, 0) + 1
            if status >= 300:
                failures += 1
                print(f"  {delivery.meeting_id}/{delivery.seq}: HTTP {status}", file=sys.stderr)
            if not args.quiet and (index == total or index % max(1, total // 20) == 0):
                print(
                    f"  sent {index}/{total} ({100 * index // total}%) in {time.monotonic() - started:.1f} s",
                    file=sys.stderr,
                )
        if args.end:
            token = settings.admin_token.get_secret_value() if settings.admin_token else None
            failures += _end_meetings(client, args.url, token, meeting_ids)
    summary = ", ".join(f"{count} x HTTP {status}" for status, count in sorted(counts.items()))
    print(f"audioflow simulate: done: {summary}", file=sys.stderr)
    return 1 if failures else 0


def _end_meetings(client: httpx.Client, base_url: str, token: str | None, meeting_ids: list[str]) -> int:
    if token is None:
        print("audioflow simulate: --end needs AUDIOFLOW_ADMIN_TOKEN", file=sys.stderr)
        return 1
    failed = 0
    for meeting_id in meeting_ids:
        response = client.post(
            base_url.rstrip("/") + meeting_path(meeting_id) + "/end",
            headers={"authorization": f"Bearer {token}"},
        )
        if response.status_code != 200:
            failed += 1
            print(f"  ending {meeting_id}: HTTP {response.status_code}", file=sys.stderr)
    return failed
