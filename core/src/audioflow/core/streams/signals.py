"""Shutdown is an event: SIGTERM and SIGINT ask a worker to stop after the entry in hand."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

__all__ = ["install_signal_handlers"]

log = logging.getLogger(__name__)


def install_signal_handlers(stop: threading.Event) -> None:
    """SIGTERM and SIGINT set ``stop`` (the consumer finishes its entry and returns); a second
    signal raises SystemExit at once. Call from the main thread."""
    received = 0

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal received
        received += 1
        name = signal.Signals(signum).name
        if received > 1:
            log.warning("%s again: exiting now", name)
            raise SystemExit(128 + signum)
        log.info("%s: finishing the entry in hand, then stopping (send it again to exit now)", name)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
