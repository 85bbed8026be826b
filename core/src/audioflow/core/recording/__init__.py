"""The append-only meeting recording on disk: one growing canonical WAV plus a sidecar index.

Files, for a recording at ``path`` (say ``recording.wav``):

- ``recording.wav``: a canonical 44-byte WAV header, then the PCM of seq 0, 1, 2, ... back to back.
  Its RIFF and ``data`` sizes always describe a prefix of the file that is fully written and indexed,
  so a reader may serve ``44 + data size`` bytes at any moment (:func:`snapshot_length`).
- ``recording.wav.idx``: the index, which is authoritative. Fixed-size ASCII records of
  :data:`RECORD_SIZE` (41) bytes, so it can be read with ``cat`` and addressed by seq without a scan::

      audioflow-recording-index v1            \\n      <- record 0: magic, padded to 40 bytes + newline
      0000000000 0000000000 0000032000 chunk  \\n      <- record k+1 describes seq k:
      0000000001 0000032000 0000032000 silence\\n         seq, byte offset of its PCM within the data,
                                                         length in bytes, kind ("chunk" or "silence")

  Seqs are held contiguously from 0: record ``k+1`` is seq ``k`` and its offset is the sum of the
  lengths before it.
- ``recording.wav.lock``: an empty file that :func:`locked_recording` ``flock``\\s.

An append is O(chunk) and never rewrites the file, in this order:

1. write the PCM at the end of the WAV (``fdatasync`` when ``fsync=True``);
2. write the index record (``fdatasync`` when ``fsync=True``): this is the commit point;
3. patch the RIFF size (offset 4) and ``data`` size (offset 40) in place.

The header is patched last so that it never covers bytes a crash could still take back: readers that
trust it see only committed audio. The header itself is made durable on :meth:`RecordingFile.close` and
repaired on open if a crash lost it. :meth:`RecordingFile.open` recovers from a crash at any step: PCM
past the last index record is cut off, a torn (partial) or zero-filled last index record is cut off,
and the header sizes are re-patched from the index.

A :class:`RecordingFile` has a single writer at a time and is not thread-safe; processes that share one
recording go through :func:`locked_recording`.

Modules: ``index`` (records, file names), ``fileio`` (positional I/O), ``file`` (:class:`RecordingFile`),
``lock`` (``flock`` turns, and what a reader may serve), ``reader`` (a recording held open for reading).
These are the local implementation behind ``audioflow.core.storage``; the gateway and workers reach them
only through that interface.
"""

from __future__ import annotations

from audioflow.core.recording.file import RecordingFile
from audioflow.core.recording.index import (
    INDEX_MAGIC,
    INDEX_SUFFIX,
    LOCK_SUFFIX,
    RECORD_SIZE,
    Entry,
    Kind,
    index_path,
    lock_path,
)
from audioflow.core.recording.lock import locked_recording, recording_lock, same_file, snapshot_length
from audioflow.core.recording.reader import RecordingFileReader

__all__ = [
    "INDEX_MAGIC",
    "INDEX_SUFFIX",
    "LOCK_SUFFIX",
    "RECORD_SIZE",
    "Entry",
    "Kind",
    "RecordingFile",
    "RecordingFileReader",
    "index_path",
    "lock_path",
    "locked_recording",
    "recording_lock",
    "same_file",
    "snapshot_length",
]
