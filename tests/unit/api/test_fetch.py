"""``file:`` chunk URLs: read bounded by the limit, whatever the file did since its size was read, and
contained in the ingest root even when the root itself is reached through a symlink."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from audioflow.api import fetch
from audioflow.core.errors import BadRequest, Forbidden, PayloadTooLarge
from audioflow.core.settings import Settings

LIMIT = 1000


def _settings(root: Path) -> Settings:
    return Settings(ingest_root=root, max_chunk_bytes=LIMIT)


def test_a_file_that_grew_since_its_size_was_read_is_read_whole(tmp_path: Path) -> None:
    chunk = tmp_path / "chunk.wav"
    chunk.write_bytes(b"a" * 100)
    target, size = fetch._file_target(chunk.as_uri(), _settings(tmp_path))
    chunk.write_bytes(b"b" * 700)  # grew (and changed) after the size was taken
    assert size == 100
    assert fetch._read_target(target, size, _settings(tmp_path)) == b"b" * 700


def test_a_file_that_grew_past_the_limit_is_too_large(tmp_path: Path) -> None:
    chunk = tmp_path / "chunk.wav"
    chunk.write_bytes(b"a" * 100)
    target, size = fetch._file_target(chunk.as_uri(), _settings(tmp_path))
    chunk.write_bytes(b"b" * (LIMIT + 1))
    with pytest.raises(PayloadTooLarge):
        fetch._read_target(target, size, _settings(tmp_path))


def test_a_file_at_the_limit_is_read(tmp_path: Path) -> None:
    chunk = tmp_path / "chunk.wav"
    chunk.write_bytes(b"c" * LIMIT)
    assert fetch._read_file(chunk.as_uri(), _settings(tmp_path)) == b"c" * LIMIT


def test_a_root_reached_through_a_symlink_still_contains_its_files_only(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "ok.wav").write_bytes(b"ok")
    (tmp_path / "outside.wav").write_bytes(b"no")
    (tmp_path / "link").symlink_to(real)
    settings = _settings(tmp_path / "link")
    assert fetch._read_file("file:ok.wav", settings) == b"ok"
    assert fetch._read_file((tmp_path / "link" / "ok.wav").as_uri(), settings) == b"ok"
    with pytest.raises(Forbidden):
        fetch._read_file("file:../outside.wav", settings)
    with pytest.raises(Forbidden):  # a sibling whose name starts with the root's
        (tmp_path / "real2").mkdir()
        (tmp_path / "real2" / "x.wav").write_bytes(b"x")
        fetch._read_file((tmp_path / "real2" / "x.wav").as_uri(), settings)


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    """The name is looked up without opening what it names: a FIFO, inside the root or reached through a
    symlink out of it, is refused at once (an open for reading would wait for a writer forever)."""
    os.mkfifo(tmp_path / "pipe.wav")
    outside = tmp_path / "outside"
    outside.mkdir()
    os.mkfifo(outside / "pipe.wav")
    root = tmp_path / "root"
    root.mkdir()
    (root / "pipe.wav").symlink_to(tmp_path / "pipe.wav")
    os.mkfifo(root / "own.wav")
    settings = _settings(root)
    with pytest.raises(BadRequest, match="regular file"):
        fetch._read_file("file:own.wav", settings)
    with pytest.raises(Forbidden, match="outside"):
        fetch._read_file("file:pipe.wav", settings)


def test_a_file_is_read_by_its_real_path(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "c.wav").write_bytes(b"c")
    (tmp_path / "alias.wav").symlink_to(tmp_path / "real" / "c.wav")
    target, size = fetch._file_target("file:alias.wav", _settings(tmp_path))
    assert (target, size) == (str((tmp_path / "real" / "c.wav").resolve()), 1)
