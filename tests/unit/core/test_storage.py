"""The recording seam of LocalStorage: a writer's turn and appends, a reader that serves only what is
committed and stays on the file it opened, and deletion by detach, reattach and purge."""

from __future__ import annotations

from pathlib import Path

import pytest

from audioflow.core.storage import LocalStorage, Storage
from audioflow.core.wav import CANONICAL_HEADER_SIZE, AudioFormat

FMT = AudioFormat(16000, 1, 16)


def _store(tmp_path: Path) -> Storage:
    store = LocalStorage(tmp_path, fsync=False)
    store.put_chunk("m", 0, b"chunk")  # the meeting's folder exists once a chunk does
    return store


def test_a_reader_follows_what_the_writer_commits(tmp_path: Path) -> None:
    store = _store(tmp_path)
    with pytest.raises(FileNotFoundError):
        store.open_recording("m")  # nothing concatenated yet
    with store.recording_turn("m"), store.open_for_append("m", FMT) as rec:
        rec.append(0, bytes(640))
    reader = store.open_recording("m")
    try:
        assert reader.format == FMT and reader.committed() == CANONICAL_HEADER_SIZE + 640
        with store.recording_turn("m"), store.open_for_append("m", FMT) as rec:
            rec.append(1, b"\x01\x00" * 160)
        assert reader.committed() == CANONICAL_HEADER_SIZE + 960
        assert reader.read(CANONICAL_HEADER_SIZE + 640, 1000) == b"\x01\x00" * 160  # fewer at the end
        assert reader.current()
    finally:
        reader.close()
    with pytest.raises(OSError):
        reader.read(0, 1)


def test_deletion_detaches_then_purges_and_a_reader_keeps_its_file(tmp_path: Path) -> None:
    store = _store(tmp_path)
    with store.recording_turn("m"), store.open_for_append("m", FMT) as rec:
        rec.append(0, bytes(640))
    reader = store.open_recording("m")
    detached = store.detach_meeting("m")
    assert detached is not None and not store.has_chunk("m", 0)
    assert not reader.current() and reader.committed() == CANONICAL_HEADER_SIZE + 640
    reader.close()
    with pytest.raises(FileNotFoundError), store.recording_turn("m"):  # it never brings the folder back
        pass
    store.reattach_meeting("m", detached)
    assert store.has_chunk("m", 0)
    detached = store.detach_meeting("m")
    assert detached is not None
    store.purge(detached)
    assert store.detach_meeting("m") is None
    assert not any((tmp_path / "deleting").iterdir())
