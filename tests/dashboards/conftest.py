"""The operator tests' kmock emulator fixture, reused for the dashboards test."""

from tests.operator.conftest import emulator

__all__ = ["emulator"]
