"""Fuzzing the gateway's HTTP contract (schemathesis) and its WebSocket (hypothesis)."""
