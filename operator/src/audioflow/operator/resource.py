"""What every reaction to a Meeting shares: which resource it is and the status it accumulates."""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping
from typing import Any

from audioflow.operator.kube import ObjectRef
from audioflow.operator.model import API_VERSION, KIND, condition_status, set_condition

Logger = logging.Logger | logging.LoggerAdapter[Any]


class StatusUpdate:
    """Accumulates status fields and conditions; tells which conditions changed since ``status``."""

    def __init__(self, status: Mapping[str, Any], generation: int | None, now: str) -> None:
        self.before: list[Mapping[str, Any]] = list(status.get("conditions") or [])
        self.conditions: list[dict[str, Any]] = [dict(c) for c in self.before]
        self.fields: dict[str, Any] = {}
        self.generation = generation
        self.now = now

    def condition(self, type: str, ok: bool | None, reason: str, message: str = "") -> bool:
        """Set a condition; True when its status differs from the stored one (a transition)."""
        self.conditions = set_condition(
            self.conditions, type, ok, reason, message, now=self.now, generation=self.generation
        )
        return condition_status(self.before, type) != condition_status(self.conditions, type)

    def apply(self, patch: MutableMapping[str, Any]) -> None:
        status = patch.setdefault("status", {})
        status.update(self.fields)
        if self.conditions != [dict(c) for c in self.before]:
            status["conditions"] = self.conditions


def identity(body: Mapping[str, Any]) -> tuple[str, str, int | None, ObjectRef]:
    meta = body.get("metadata") or {}
    name, namespace = str(meta.get("name", "")), str(meta.get("namespace", ""))
    generation = meta.get("generation")
    return (
        name,
        namespace,
        generation if isinstance(generation, int) else None,
        ObjectRef.of(body, API_VERSION, KIND),
    )
