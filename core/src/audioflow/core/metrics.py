"""Prometheus metrics shared by the components: prefix ``audioflow_``, base units, no meeting id labels."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

# Seconds a handler call takes, from 5 ms to 30 s: one scale for every handler-time histogram, so that
# the components' dashboards compare like with like (the operator's reconcile time uses it too).
HANDLER_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

STREAM_ENTRIES = Counter(
    "audioflow_stream_entries_total",
    "Stream entries handled by a consumer, by outcome (ack, retry, error, dead_letter).",
    ["stream", "group", "outcome"],
)
STREAM_HANDLE_SECONDS = Histogram(
    "audioflow_stream_handle_seconds",
    "Time spent in a stream handler per entry.",
    ["stream", "group"],
    buckets=HANDLER_SECONDS_BUCKETS,
)
STREAM_RECLAIMED = Counter(
    "audioflow_stream_reclaimed_total",
    "Entries taken over from an idle consumer with XAUTOCLAIM.",
    ["stream", "group"],
)
CHUNKS_INGESTED = Counter(
    "audioflow_chunks_ingested_total",
    "Chunk uploads answered by the gateway, by result (created, duplicate, rejected).",
    ["result"],
)
INGEST_BATCH_CHUNKS = Histogram(
    "audioflow_ingest_batch_chunks",
    "Chunks committed together by one group commit of the gateway (the usual case's path).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)
INGEST_BYTES = Counter("audioflow_ingest_bytes_total", "Bytes of accepted new chunks.")
STT_SECONDS = Histogram(
    "audioflow_stt_decode_seconds",
    "Speech-to-text decoder time per chunk.",
    ["engine"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32),
)
STT_AUDIO_SECONDS = Counter("audioflow_stt_audio_seconds_total", "Seconds of audio transcribed.", ["engine"])
RECORDING_APPENDED_BYTES = Counter(
    "audioflow_recording_appended_bytes_total", "PCM bytes appended to recordings.", ["kind"]
)
RECORDING_GAPS = Counter("audioflow_recording_gaps_total", "Missing chunks bridged by silence.")
WORKER_BUSY = Gauge("audioflow_worker_busy", "1 while a worker handles an entry.", ["component"])


def serve_metrics(port: int) -> None:
    """Expose this process's metrics on ``port`` (0 = do not serve)."""
    if port:
        start_http_server(port)
