"""Typed errors raised by core and mapped once by each caller (HTTP envelope, stream outcome, kopf).

Each error carries a stable machine-readable ``code`` and the HTTP status a gateway should answer with.
"""

from __future__ import annotations


class AudioflowError(Exception):
    """Base class: ``code`` is stable for clients, ``message`` names the problem."""

    code = "error"
    http_status = 500
    retry = False  # a retry later can succeed (the answer carries Retry-After)
    #: For a worker: handling the same entry again cannot succeed (the stored data itself is bad), so it
    #: is dead-lettered at once instead of being retried up to the delivery limit.
    permanent = False

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


def is_permanent(exc: BaseException | None) -> bool:
    """Whether a worker should dead-letter the entry that raised `exc` at once (see ``permanent``)."""
    return isinstance(exc, AudioflowError) and exc.permanent


class BadRequest(AudioflowError):
    code = "bad_request"
    http_status = 400


class InvalidWav(BadRequest):
    code = "invalid_wav"
    permanent = True  # raised by a worker, it means a stored chunk does not parse


class InvalidId(BadRequest):
    code = "invalid_id"


class Unauthorized(AudioflowError):
    code = "unauthorized"
    http_status = 401


class SignatureError(Unauthorized):
    code = "bad_signature"


class Forbidden(AudioflowError):
    code = "forbidden"
    http_status = 403


class NotFound(AudioflowError):
    code = "not_found"
    http_status = 404


class Conflict(AudioflowError):
    code = "conflict"
    http_status = 409


class PayloadTooLarge(AudioflowError):
    code = "payload_too_large"
    http_status = 413


class UnsupportedMediaType(AudioflowError):
    code = "unsupported_media_type"
    http_status = 415


class RangeNotSatisfiable(AudioflowError):
    code = "range_not_satisfiable"
    http_status = 416


class FormatMismatch(AudioflowError):
    code = "format_mismatch"
    http_status = 422


class SeqTooFarAhead(AudioflowError):
    """A seq so far past the meeting's highest that bridging the seqs between would be an amplification
    (see ``AUDIOFLOW_MAX_SEQ_AHEAD``); nothing was stored."""

    code = "seq_too_far_ahead"
    http_status = 422


class ChunkTooLong(AudioflowError):
    """A chunk longer than ``AUDIOFLOW_MAX_CHUNK_S``: its decode would outlast a worker's lease many
    times over; nothing was stored."""

    code = "chunk_too_long"
    http_status = 422


class RecordingFull(AudioflowError):
    """The recording would pass the RIFF 4 GiB limit; nothing was written."""

    code = "recording_full"
    http_status = 507


class StorageFull(AudioflowError):
    """The data folder has no room for this chunk; nothing was stored and the client should retry."""

    code = "storage_full"
    http_status = 507
    retry = True


class RecordingCorrupt(AudioflowError):
    """The recording's files on disk contradict each other in a way recovery must not guess about."""

    code = "recording_corrupt"
    http_status = 500
    permanent = True


class ChunkMissing(AudioflowError):
    """A chunk the database holds has no file in storage (lost with the disk): no retry brings it back."""

    code = "chunk_missing"
    http_status = 500
    permanent = True


class DownloadFailed(AudioflowError):
    """Fetching a chunk's URL failed (the ``/webhooks/chunk`` route)."""

    code = "download_failed"
    http_status = 502


class Unavailable(AudioflowError):
    """A dependency (Redis, the database) is down; the client should retry."""

    code = "unavailable"
    http_status = 503
    retry = True


class RequestTimeout(AudioflowError):
    code = "request_timeout"
    http_status = 408
