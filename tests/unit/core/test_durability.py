"""What "nothing accepted is lost" needs of the disk: with AUDIOFLOW_FSYNC on, SQLite syncs each commit
and a meeting's new folders are synced along with its first chunk (audioflow.core.db.engine,
audioflow.core.storage)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import text

from audioflow.core import storage
from audioflow.core.db.engine import make_engine
from audioflow.core.errors import StorageFull


@pytest.mark.parametrize(("fsync", "expected"), [(True, 2), (False, 1)])  # 2 FULL, 1 NORMAL
def test_sqlite_syncs_every_commit_when_fsync_is_on(tmp_path: Path, fsync: bool, expected: int) -> None:
    """synchronous=NORMAL in WAL mode can lose the last commits to a power loss: chunks answered 201
    whose rows are gone. FULL syncs the WAL at each commit."""
    engine = make_engine(f"sqlite:///{tmp_path / 'audioflow.db'}", fsync=fsync)
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA synchronous")).scalar() == expected
    engine.dispose()


def test_a_new_meetings_folders_are_synced_with_its_first_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[Path] = []
    real = storage._fsync_dir

    def recording(folder: str | Path) -> None:
        synced.append(Path(folder))
        real(folder)

    monkeypatch.setattr(storage, "_fsync_dir", recording)
    store = storage.LocalStorage(tmp_path, fsync=True)
    store.put_chunk("m", 0, b"first")
    root = tmp_path.resolve()
    chunks = root / "meetings" / "m" / "chunks"
    # Each created folder's entry in its parent, and the chunk's entry in its folder.
    assert set(synced) == {root, root / "meetings", root / "meetings" / "m", chunks}
    synced.clear()
    store.put_chunk("m", 1, b"second")
    assert synced == [chunks]


def test_a_group_of_chunks_is_synced_file_by_file_and_each_folder_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The group commit's chunks: every file synced (together, not one after another), every folder
    once however many of the group's chunks it holds."""
    store = storage.LocalStorage(tmp_path, fsync=True)
    store.put_chunk("a", 0, b"a0")
    store.put_chunk("b", 0, b"b0")
    folders: list[Path] = []
    files: list[int] = []
    real_dir, real_fsync = storage._fsync_dir, os.fsync

    def folder_synced(folder: str | Path) -> None:
        folders.append(Path(folder))
        real_dir(folder)

    def file_synced(fd: int) -> None:
        files.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(storage, "_fsync_dir", folder_synced)
    monkeypatch.setattr(os, "fsync", file_synced)
    group = [("a", 1, b"a1"), ("b", 1, b"b1"), ("a", 2, b"a2"), ("a", 3, b"a3")]
    store.put_chunks(group)
    meetings = tmp_path.resolve() / "meetings"
    assert sorted(folders) == [meetings / "a" / "chunks", meetings / "b" / "chunks"]
    assert len(files) == len(folders) + len(group)  # _fsync_dir syncs with os.fsync too
    assert [store.get_chunk(m, seq) for m, seq, _ in group] == [data for _, _, data in group]


def test_a_group_that_fails_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = storage.LocalStorage(tmp_path, fsync=True)
    store.put_chunk("a", 0, b"a0")
    real_fsync = os.fsync
    calls = 0

    def full_at_the_third(fd: int) -> None:
        """Test double: the disk is full when the third file is synced."""
        nonlocal calls
        calls += 1
        if calls == 3:
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full_at_the_third)
    with pytest.raises(StorageFull):
        store.put_chunks([("a", seq, b"x") for seq in (1, 2, 3, 4)])
    chunks = tmp_path.resolve() / "meetings" / "a" / "chunks"
    assert sorted(p.name for p in chunks.iterdir()) == ["00000000.wav"]


@pytest.mark.parametrize("fsync", [True, False])
def test_a_file_left_by_an_attempt_that_did_not_commit_is_overwritten_whole(
    tmp_path: Path, fsync: bool
) -> None:
    """A chunk's file is written under its own name by the holder of its key. One left by an attempt
    that crashed or rolled back (longer, or cut short) has no row; the next holder's bytes replace it
    entirely, with nothing of the old file's tail."""
    store = storage.LocalStorage(tmp_path, fsync=fsync)
    store.put_chunk("m", 0, b"first")
    store.chunk_path("m", 1).write_bytes(b"left by a crashed attempt, longer than the chunk")
    store.put_chunks([("m", 1, b"the chunk"), ("m", 2, b"next")])
    assert [store.get_chunk("m", seq) for seq in (0, 1, 2)] == [b"first", b"the chunk", b"next"]
    assert sorted(p.name for p in store.chunk_path("m", 0).parent.iterdir()) == [
        "00000000.wav",
        "00000001.wav",
        "00000002.wav",
    ]
