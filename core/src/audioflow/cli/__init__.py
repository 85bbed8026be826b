"""The `audioflow` command; see `audioflow.cli.main`."""

from audioflow.cli.main import main

__all__ = ["main"]
