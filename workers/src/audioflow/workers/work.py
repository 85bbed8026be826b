"""A work entry of either stream, decoded and re-validated: the workers' name for core's wire contract
(``audioflow.core.work_item``), so that the encoding and the decoding live in one place."""

from __future__ import annotations

from audioflow.core.work_item import WorkItem as Work

__all__ = ["Work"]
