"""The gateway process's own settings, applied when its server is built."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from audioflow.api import server
from audioflow.core.settings import Settings


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_gc")
def test_the_built_gateway_freezes_its_startup_objects_and_collects_less_often(tmp_path: Path) -> None:
    gc.unfreeze()
    built = server._server(Settings(data_dir=tmp_path), 100, "127.0.0.1", 0)
    assert built.config.app is not None
    assert gc.get_freeze_count() > 0  # the app, its routes and every module loaded so far
    assert gc.get_threshold() == server.GC_THRESHOLDS
    assert server.GC_THRESHOLDS[0] > 700  # Python's default young-generation threshold
