"""What "nothing accepted is lost" needs of the disk: with AUDIOFLOW_FSYNC on, SQLite syncs each commit
and a meeting's new folders are synced along with its first chunk (audioflow.core.db.engine,
audioflow.core.storage)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from audioflow.core import storage
from audioflow.core.db.engine import make_engine


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

    def recording(folder: Path) -> None:
        synced.append(folder)
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
