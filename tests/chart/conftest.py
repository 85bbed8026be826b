"""Fixtures for the chart tests: helm from a registry package, the default render, offline only."""

from __future__ import annotations

import pytest

from tests.chart import tools


@pytest.fixture(scope="session")
def helm() -> tools.Binaries:
    try:
        return tools.binaries()
    except tools.ToolMissing as exc:
        missing = str(exc)
    pytest.fail(missing, pytrace=False)


@pytest.fixture(scope="session")
def rendered(helm: tools.Binaries) -> list[tools.Manifest]:
    """The chart with its default values, release "af" in namespace "media"."""
    return tools.template()
