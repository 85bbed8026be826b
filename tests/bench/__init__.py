"""The benchmark suite's smoke test: its code runs on the tiny configuration (no timed assertions)."""
