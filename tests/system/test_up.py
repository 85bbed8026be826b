"""``audioflow up``: embedded Redis and SQLite, a clean stop on SIGINT with no process left behind,
and a second start on the same data folder that continues the same meetings."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from audioflow.core.signing import sign_chunk
from audioflow.workers.simulate import cut_chunks, load_speech
from tests.services import free_port


def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc)."""
    found: set[int] = set()
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for task in Path(f"/proc/{parent}/task").glob("*/children"):
            try:
                kids = {int(k) for k in task.read_text().split()}
            except OSError:
                continue
            frontier.extend(kids - found)
            found |= kids
    return found


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def _start(data_dir: Path, port: int, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``audioflow up`` with no REDIS_URL or DATABASE_URL; return it and the URL it prints."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AUDIOFLOW_") and k not in ("REDIS_URL", "DATABASE_URL")
    }
    before = log.read_text().count("ready: ") if log.exists() else 0
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "audioflow.cli", "up", "--port", str(port), "--data-dir", str(data_dir)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        urls = re.findall(r"ready: (http://\S+)", log.read_text())
        if len(urls) > before:
            return proc, urls[-1]
        assert proc.poll() is None, log.read_text()
        time.sleep(0.2)
    raise AssertionError(f"audioflow up never became ready:\n{log.read_text()}")


def _stop(proc: subprocess.Popen[bytes]) -> set[int]:
    children = _descendants(proc.pid)
    assert children, "up started no children"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 0
    return {pid for pid in children if _alive(pid)}


def test_up_stops_cleanly_and_resumes_the_same_meetings(tmp_path: Path) -> None:
    data_dir, port, log = tmp_path / "data", free_port(), tmp_path / "up.log"
    proc, url = _start(data_dir, port, log)
    credentials = json.loads((data_dir / "local-credentials.json").read_text())
    token, secret = credentials["api_token"], credentials["webhook_secret"]
    admin = {"authorization": f"Bearer {credentials['admin_token']}"}
    assert f"token={token}" in url
    base = f"http://127.0.0.1:{port}"
    fmt, pcm = load_speech()
    chunks = cut_chunks(fmt, pcm, 1.0, 4)
    auth = {"authorization": f"Bearer {token}"}

    def put(seq: int) -> int:
        headers = {"content-type": "audio/wav", **sign_chunk(secret, "kept", seq, chunks[seq]).as_dict()}
        return httpx.put(
            f"{base}/v1/meetings/kept/chunks/{seq}", content=chunks[seq], headers=headers
        ).status_code

    try:
        assert [put(seq) for seq in (0, 1)] == [201, 201]
    finally:
        leftovers = _stop(proc)
    assert leftovers == set(), f"processes left behind: {leftovers}"
    assert "redis on 127.0.0.1" in log.read_text() and (data_dir / "audioflow.db").exists()

    proc, _ = _start(data_dir, port, log)
    try:
        assert put(1) == 200  # the same chunk again: still known after the restart
        assert [put(seq) for seq in (2, 3)] == [201, 201]
        httpx.post(f"{base}/v1/meetings/kept/end", headers=admin).raise_for_status()
        deadline = time.monotonic() + 90
        while (status := httpx.get(f"{base}/v1/meetings/kept", headers=auth).json())["phase"] != "completed":
            assert time.monotonic() < deadline, status
            time.sleep(0.3)
        assert (status["chunks_received"], status["chunks_transcribed"], status["concatenated_through"]) == (
            4,
            4,
            3,
        )
    finally:
        leftovers = _stop(proc)
    assert leftovers == set(), f"processes left behind: {leftovers}"
