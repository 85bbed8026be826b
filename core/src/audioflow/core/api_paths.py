"""The gateway's URL paths, written once: its routes, the clients that call it (the operator, the
simulator) and the chunk signature (which covers an upload's path) all build them from here."""

from __future__ import annotations

API_VERSION = "/v1"
MEETINGS = f"{API_VERSION}/meetings"


def meeting_path(meeting_id: str) -> str:
    return f"{MEETINGS}/{meeting_id}"


def chunk_path(meeting_id: str, seq: int | str) -> str:
    return f"{meeting_path(meeting_id)}/chunks/{seq}"
