"""The append-only recording on disk (audioflow.core.recording)."""

from __future__ import annotations

import array
import io
import multiprocessing
import os
import random
import shutil
import tempfile
import threading
import time
import wave
from collections.abc import Sequence
from multiprocessing.sharedctypes import SynchronizedArray
from multiprocessing.synchronize import Barrier, Event
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audioflow.core import fileio
from audioflow.core.errors import FormatMismatch, RecordingCorrupt, RecordingFull
from audioflow.core.recording import (
    INDEX_MAGIC,
    RECORD_SIZE,
    Entry,
    RecordingFile,
    index_path,
    lock_path,
    locked_recording,
    recording_lock,
    snapshot_length,
)
from audioflow.core.recording import file as recording_file
from audioflow.core.wav import AudioFormat, canonical_header, parse_wav, pcm_view

FMT = AudioFormat(16000, 1, 16)


def chunk_pcm(seq: int, frames: int | None = None, fmt: AudioFormat = FMT) -> bytes:
    """Deterministic PCM for ``seq``: 1-400 frames unless told."""
    rng = random.Random(seq)
    count = rng.randint(1, 400) if frames is None else frames
    return rng.randbytes(count * fmt.block_align)


def reference(pcms: Sequence[bytes], fmt: AudioFormat = FMT) -> bytes:
    body = b"".join(pcms)
    return canonical_header(fmt, len(body)) + body


def files(path: Path) -> tuple[bytes, bytes]:
    return path.read_bytes(), index_path(path).read_bytes()


@pytest.fixture
def wav(tmp_path: Path) -> Path:
    return tmp_path / "meeting" / "recording.wav"


# -- basics ---------------------------------------------------------------------------------------------


def test_new_recording_is_an_empty_canonical_wav(wav: Path) -> None:
    with RecordingFile.open(wav, FMT) as rec:
        assert rec.next_seq == 0
        assert rec.held_through == -1
        assert rec.data_length == 0
        assert rec.file_length == 44
        assert rec.duration_s == 0.0
        assert rec.entries == ()
        assert rec.entry(0) is None
        assert not rec.holds(0)
        assert rec.recovered == ()
    assert wav.read_bytes() == canonical_header(FMT, 0)
    assert index_path(wav).read_bytes() == INDEX_MAGIC
    assert snapshot_length(wav) == (FMT, 44)


def test_append_in_order_matches_reference(wav: Path) -> None:
    pcms = [chunk_pcm(seq) for seq in range(6)]
    with RecordingFile.open(wav, FMT) as rec:
        for seq, pcm in enumerate(pcms):
            entry = rec.append(seq, pcm)
            assert entry == Entry(seq=seq, offset=sum(map(len, pcms[:seq])), length=len(pcm), kind="chunk")
            assert wav.read_bytes() == reference(pcms[: seq + 1])
            assert snapshot_length(wav) == (FMT, 44 + sum(map(len, pcms[: seq + 1])))
        total = sum(map(len, pcms))
        assert rec.next_seq == 6
        assert rec.held_through == 5
        assert rec.data_length == total
        assert rec.file_length == 44 + total
        assert rec.duration_s == total / 2 / 16000
        assert [e.seq for e in rec.entries] == list(range(6))
        assert rec.entry(3) == rec.entries[3]
        assert all(rec.holds(s) for s in range(6))
        assert not rec.holds(6)
        assert not rec.holds(-1)
    data = wav.read_bytes()
    assert data == reference(pcms)
    info = parse_wav(data)
    assert bytes(pcm_view(data, info)) == b"".join(pcms)
    with wave.open(io.BytesIO(data), "rb") as reader:
        assert reader.getnframes() == total // 2
        assert reader.readframes(total) == b"".join(pcms)


def test_index_format_is_fixed_width_text(wav: Path) -> None:
    with RecordingFile.open(wav, FMT) as rec:
        rec.append(0, b"\x01\x00" * 16000)
        rec.append_silence(1, 8000)
    lines = index_path(wav).read_bytes().splitlines(keepends=True)
    assert lines == [
        b"audioflow-recording-index v1            \n",
        b"0000000000 0000000000 0000032000 chunk  \n",
        b"0000000001 0000032000 0000016000 silence\n",
    ]
    assert all(len(line) == RECORD_SIZE for line in lines)


def test_reopen_continues_and_reads_entries_from_disk(wav: Path) -> None:
    pcms = [chunk_pcm(seq) for seq in range(5)]
    with RecordingFile.open(wav, FMT) as rec:
        for seq in range(3):
            rec.append(seq, pcms[seq])
        before = rec.entries
    with RecordingFile.open(wav, FMT) as rec:
        assert rec.next_seq == 3
        assert rec.data_length == sum(map(len, pcms[:3]))
        assert rec.entry(2) == before[2]  # read straight from the index
        assert rec.entries == before
        for seq in range(3, 5):
            rec.append(seq, pcms[seq])
        assert rec.recovered == ()
    assert wav.read_bytes() == reference(pcms)


def test_accepts_memoryviews_of_any_item_size(wav: Path) -> None:
    samples = array.array("h", range(-500, 500))
    source = reference([samples.tobytes()])
    with RecordingFile.open(wav, FMT) as rec:
        rec.append(0, memoryview(samples))
        rec.append(1, pcm_view(source, parse_wav(source)))
    assert wav.read_bytes() == reference([samples.tobytes()] * 2)


def test_reappend_of_a_held_seq_changes_nothing(wav: Path) -> None:
    with RecordingFile.open(wav, FMT) as rec:
        for seq in range(3):
            rec.append(seq, chunk_pcm(seq))
        before = files(wav)
        assert rec.append(1, chunk_pcm(99)) is None
        assert rec.append(0, b"odd") is None  # not even validated: re-delivery is a no-op
        assert rec.append_silence(2, 10) is None
        assert rec.next_seq == 3
        assert files(wav) == before
    with RecordingFile.open(wav, FMT) as rec:
        assert rec.append(2, chunk_pcm(2)) is None
    assert files(wav) == before


def test_out_of_order_append_is_refused(wav: Path) -> None:
    with RecordingFile.open(wav, FMT) as rec:
        with pytest.raises(ValueError, match="next must be 0"):
            rec.append(1, chunk_pcm(1))
        rec.append(0, chunk_pcm(0))
        with pytest.raises(ValueError, match="holds seqs through 0, so the next must be 1"):
            rec.append_silence(5, 100)
        assert rec.next_seq == 1
    assert wav.read_bytes() == reference([chunk_pcm(0)])
    assert len(index_path(wav).read_bytes()) == 2 * RECORD_SIZE


@pytest.mark.parametrize(
    ("seq", "pcm", "needle"),
    [
        (0, b"", "positive multiple of the 2-byte frame"),
        (0, b"\x00\x01\x02", "3 bytes of PCM"),
        (-1, b"\x00\x00", "non-negative"),
        (True, b"\x00\x00", "non-negative"),
    ],
)
def test_bad_appends_are_refused(wav: Path, seq: int, pcm: bytes, needle: str) -> None:
    with RecordingFile.open(wav, FMT) as rec:
        with pytest.raises(ValueError, match=needle):
            rec.append(seq, pcm)
        with pytest.raises(ValueError, match="positive number of frames"):
            rec.append_silence(0, 0)
    assert files(wav) == (canonical_header(FMT, 0), INDEX_MAGIC)


def test_closed_recording_refuses_use(wav: Path) -> None:
    rec = RecordingFile.open(wav, FMT)
    rec.close()
    rec.close()  # idempotent
    assert rec.closed
    with pytest.raises(ValueError, match="closed"):
        rec.append(0, chunk_pcm(0))
    assert "closed" in repr(rec)


def test_format_mismatch_on_reopen(wav: Path) -> None:
    with RecordingFile.open(wav, FMT) as rec:
        rec.append(0, chunk_pcm(0))
    before = files(wav)
    with pytest.raises(FormatMismatch) as caught:
        RecordingFile.open(wav, AudioFormat(16000, 2, 16))
    assert caught.value.code == "format_mismatch"
    assert "16000 Hz, 1 channel, 16-bit PCM" in caught.value.message
    assert "16000 Hz, 2 channels, 16-bit PCM" in caught.value.message
    assert files(wav) == before


# -- silence --------------------------------------------------------------------------------------------


def test_silence_entries(wav: Path) -> None:
    with RecordingFile.open(wav, FMT) as rec:
        rec.append(0, chunk_pcm(0, 10))
        entry = rec.append_silence(1, 160)
        assert entry == Entry(seq=1, offset=20, length=320, kind="silence")
        rec.append(2, chunk_pcm(2, 10))
        assert [e.kind for e in rec.entries] == ["chunk", "silence", "chunk"]
    assert wav.read_bytes() == reference([chunk_pcm(0, 10), b"\x00" * 320, chunk_pcm(2, 10)])
    with RecordingFile.open(wav, FMT) as rec:
        assert rec.entry(1) == entry


def test_silence_in_8bit_is_0x80(tmp_path: Path) -> None:
    fmt = AudioFormat(8000, 2, 8)
    path = tmp_path / "r8.wav"
    with RecordingFile.open(path, fmt) as rec:
        rec.append_silence(0, 3)
        rec.append(1, b"\x01\x02")
    assert path.read_bytes() == reference([b"\x80" * 6, b"\x01\x02"], fmt)


# -- the RIFF limit -------------------------------------------------------------------------------------


def test_recording_full_writes_nothing(wav: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recording_file, "MAX_DATA_LENGTH", 100)
    with RecordingFile.open(wav, FMT) as rec:
        rec.append(0, b"\x00" * 64)
        before = files(wav)
        with pytest.raises(RecordingFull) as caught:
            rec.append(1, b"\x00" * 64)
        assert caught.value.code == "recording_full"
        assert "holds 64 bytes" in caught.value.message
        assert "(64 bytes)" in caught.value.message
        assert "limit of 100 bytes" in caught.value.message
        with pytest.raises(RecordingFull):
            rec.append_silence(1, 32)
        assert files(wav) == before
        assert rec.next_seq == 1
        rec.append(1, b"\x00" * 36)  # exactly up to the limit is fine
        assert rec.data_length == 100


# -- crash recovery -------------------------------------------------------------------------------------


def test_recovery_cuts_pcm_written_before_its_index_record(wav: Path) -> None:
    pcms = [chunk_pcm(seq) for seq in range(3)]
    with RecordingFile.open(wav, FMT) as rec:
        rec.append(0, pcms[0])
        rec.append(1, pcms[1])
    good = files(wav)
    with wav.open("ab") as f:  # the crash: seq 2's PCM is on disk, its index record is not
        f.write(pcms[2][:-6])
    with RecordingFile.open(wav, FMT) as rec:
        assert rec.next_seq == 2
        assert rec.recovered
        assert "cut" in rec.recovered[0]
        assert files(wav) == good
        rec.append(2, pcms[2])
    assert wav.read_bytes() == reference(pcms)


def test_recovery_repatches_a_header_that_covers_unindexed_audio(wav: Path) -> None:
    pcms = [chunk_pcm(seq) for seq in range(2)]
    with RecordingFile.open(wav, FMT) as rec:
        rec.append(0, pcms[0])
    good = files(wav)
    with wav.open("r+b") as f:  # PCM written and header patched, index record lost
        f.seek(0, os.SEEK_END)
        f.write(pcms[1])
        f.seek(0)
        f.write(canonical_header(FMT, len(pcms[0]) + len(pcms[1])))
    with RecordingFile.open(wav, FMT) as rec:
        assert rec.next_seq == 1
        assert len(rec.recovered) == 2
    assert files(wav) == good


def test_recovery_patches_a_header_left_behind(wav: Path) -> None:
    pcms = [chunk_pcm(seq) for seq in range(3)]
    with RecordingFile.open(wav, FMT) as rec:
        for seq, pcm in enumerate(pcms):
            rec.append(seq, pcm)
    with wav.open("r+b") as f:  # crash after the index record, before the header patch
        f.write(canonical_header(FMT, len(pcms[0])))
    assert snapshot_length(wav) == (FMT, 44 + len(pcms[0]))  # readers still see a consistent prefix
    with RecordingFile.open(wav, FMT) as rec:
        assert rec.next_seq == 3
        assert rec.recovered == (f"re-patched the header data size from {len(pcms[0])} to {rec.data_length}",)
    assert wav.read_bytes() == reference(pcms)


@pytest.mark.parametrize("torn", [1, 20, RECORD_SIZE - 1])
def test_recovery_cuts_a_torn_index_record(wav: Path, torn: int) -> None:
    pcms = [chunk_pcm(seq) for seq in range(3)]
    with RecordingFile.open(wav, FMT) as rec:
        rec.append(0, pcms[0])
        rec.append(1, pcms[1])
    good = files(wav)
    with RecordingFile.open(wav, FMT) as rec:
        rec.append(2, pcms[2])
    idx = index_path(wav)
    os.truncate(idx, len(good[1]) + torn)  # seq 2's record only partly written
    with RecordingFile.open(wav, FMT) as rec:
        assert rec.next_seq == 2
        assert any("torn index record" in note for note in rec.recovered)
        assert files(wav) == good
        rec.append(2, pcms[2])
    assert wav.read_bytes() == reference(pcms)


def test_recovery_cuts_zero_filled_index_records(wav: Path) -> None:
    pcms = [chunk_pcm(seq) for seq in range(2)]
    with RecordingFile.open(wav, FMT, fsync=False) as rec:
        rec.append(0, pcms[0])
    good = files(wav)
    with index_path(wav).open("ab") as f:  # power loss: the size grew, the blocks never arrived
        f.write(b"\x00" * (RECORD_SIZE * 2 + 7))
    with RecordingFile.open(wav, FMT) as rec:
        assert rec.next_seq == 1
        assert len(rec.recovered) == 3
        assert files(wav) == good


def test_wav_shorter_than_index_is_corrupt(wav: Path) -> None:
    with RecordingFile.open(wav, FMT) as rec:
        rec.append(0, chunk_pcm(0, 100))
    os.truncate(wav, 44 + 100)
    with pytest.raises(RecordingCorrupt, match="indexed audio is missing"):
        RecordingFile.open(wav, FMT)


def test_missing_index_with_audio_is_corrupt(wav: Path) -> None:
    with RecordingFile.open(wav, FMT) as rec:
        rec.append(0, chunk_pcm(0))
    index_path(wav).unlink()
    with pytest.raises(RecordingCorrupt, match=r"index .* is missing"):
        RecordingFile.open(wav, FMT)


def test_missing_wav_with_entries_is_corrupt(wav: Path) -> None:
    with RecordingFile.open(wav, FMT) as rec:
        rec.append(0, chunk_pcm(0))
    wav.unlink()
    with pytest.raises(RecordingCorrupt, match="is missing but its index"):
        RecordingFile.open(wav, FMT)


def test_crash_between_creating_the_wav_and_its_index(wav: Path) -> None:
    wav.parent.mkdir(parents=True)
    wav.write_bytes(canonical_header(FMT, 0))
    with RecordingFile.open(wav, FMT) as rec:
        rec.append(0, chunk_pcm(0))
    assert wav.read_bytes() == reference([chunk_pcm(0)])


def test_garbage_index_is_corrupt(wav: Path) -> None:
    with RecordingFile.open(wav, FMT) as rec:
        for seq in range(3):
            rec.append(seq, chunk_pcm(seq))
    idx = index_path(wav)
    records = idx.read_bytes()
    idx.write_bytes(records[:RECORD_SIZE] + b"X" * RECORD_SIZE + records[2 * RECORD_SIZE :])
    with RecordingFile.open(wav, FMT) as rec:  # opening only checks the last record ...
        assert rec.next_seq == 3
        with pytest.raises(RecordingCorrupt, match="record 1 is not a valid entry for seq 0"):
            rec.entry(0)
        with pytest.raises(RecordingCorrupt, match="record 1"):
            _ = rec.entries  # ... reading every entry checks them all
    idx.write_bytes(records[:-RECORD_SIZE] + b"Y" * RECORD_SIZE)
    with pytest.raises(RecordingCorrupt, match="record 3"):
        RecordingFile.open(wav, FMT)
    idx.write_bytes(b"not an index\n")
    with pytest.raises(RecordingCorrupt, match="not an audioflow recording index"):
        RecordingFile.open(wav, FMT)


def test_bad_wav_header_is_corrupt(wav: Path) -> None:
    with RecordingFile.open(wav, FMT):
        pass
    wav.write_bytes(b"RIFF" + b"\x00" * 40)
    with pytest.raises(RecordingCorrupt, match="canonical header"):
        RecordingFile.open(wav, FMT)
    with pytest.raises(RecordingCorrupt, match="canonical header"):
        snapshot_length(wav)


def test_failed_write_is_rolled_back(wav: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pcms = [chunk_pcm(seq) for seq in range(2)]
    with RecordingFile.open(wav, FMT) as rec:
        rec.append(0, pcms[0])
        before = files(wav)
        real = fileio.pwrite_all
        calls = 0

        def failing(fd: int, data: bytes | memoryview, offset: int) -> None:
            nonlocal calls
            calls += 1
            if calls == 2:  # the index record: disk full
                raise OSError(28, "No space left on device")
            real(fd, data, offset)

        monkeypatch.setattr(recording_file, "pwrite_all", failing)
        with pytest.raises(OSError, match="No space"):
            rec.append(1, pcms[1])
        assert files(wav) == before
        assert rec.next_seq == 1
        monkeypatch.setattr(recording_file, "pwrite_all", real)
        rec.append(1, pcms[1])
    assert wav.read_bytes() == reference(pcms)


# -- readers --------------------------------------------------------------------------------------------


def test_snapshot_length_never_exceeds_the_file(wav: Path) -> None:
    with RecordingFile.open(wav, FMT) as rec:
        rec.append(0, chunk_pcm(0, 100))
    with wav.open("ab") as f:  # a writer mid-append: unindexed bytes past the header's size
        f.write(b"\x01" * 51)
    assert snapshot_length(wav) == (FMT, 244)
    with wav.open("r+b") as f:  # a header claiming more than is there (not ours, but never overrun)
        f.write(canonical_header(FMT, 1000))
    assert snapshot_length(wav) == (FMT, 44 + 250)  # whole frames only


# -- the ordering property ------------------------------------------------------------------------------


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[list[bytes], list[int], list[bool]]:
    count = draw(st.integers(1, 8))
    pcms = [draw(st.binary(min_size=1, max_size=40)) * 2 for _ in range(count)]  # whole 16-bit frames
    order = list(draw(st.permutations(range(count))))
    for seq in draw(st.lists(st.integers(0, count - 1), max_size=8)):
        order.insert(draw(st.integers(0, len(order))), seq)
    reopen_after = draw(st.lists(st.booleans(), min_size=len(order), max_size=len(order)))
    return pcms, order, reopen_after


@settings(max_examples=100, deadline=None)
@given(deliveries())
def test_any_delivery_order_yields_the_reference(case: tuple[list[bytes], list[int], list[bool]]) -> None:
    pcms, order, reopen_after = case
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.wav"
        waiting: dict[int, bytes] = {}
        rec = RecordingFile.open(path, FMT, fsync=False)
        try:
            for seq, reopen in zip(order, reopen_after, strict=True):
                if rec.holds(seq):
                    before = files(path)
                    assert rec.append(seq, pcms[seq]) is None
                    assert files(path) == before
                else:
                    waiting[seq] = pcms[seq]
                while rec.next_seq in waiting:  # append whatever is next, and everything waiting
                    assert rec.append(rec.next_seq, waiting.pop(rec.next_seq)) is not None
                assert path.read_bytes() == reference(pcms[: rec.next_seq])
                if reopen:
                    rec.close()
                    rec = RecordingFile.open(path, FMT, fsync=False)
        finally:
            rec.close()
        assert not waiting
        assert path.read_bytes() == reference(pcms)


# -- several processes ----------------------------------------------------------------------------------

PROCESS_SEQS = 120


def _append_until_full(path: str, start: Barrier, appended: SynchronizedArray[int], worker: int) -> None:
    """A concat worker: append the next seq whenever it holds the lock, until all are held."""
    rng = random.Random(os.getpid())
    start.wait()
    while True:
        with locked_recording(Path(path), FMT, fsync=False, timeout_s=20) as rec:
            seq = rec.next_seq
            if seq >= PROCESS_SEQS:
                return
            rec.append(seq, chunk_pcm(seq))
            appended[worker] += 1
            if seq:
                assert rec.append(seq - 1, chunk_pcm(seq - 1)) is None  # a re-delivery
        time.sleep(rng.uniform(0, 0.002))  # fetch the next message


def test_processes_sharing_a_recording_never_corrupt_it(wav: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(2)
    appended = ctx.Array("i", 2)
    workers = [ctx.Process(target=_append_until_full, args=(str(wav), start, appended, i)) for i in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [worker.exitcode for worker in workers] == [0, 0]
    counts: list[int] = appended[:]
    assert sum(counts) == PROCESS_SEQS
    assert min(counts) > 0, counts  # they did take turns
    assert wav.read_bytes() == reference([chunk_pcm(seq) for seq in range(PROCESS_SEQS)])
    with RecordingFile.open(wav, FMT) as rec:
        assert rec.recovered == ()
        assert [e.seq for e in rec.entries] == list(range(PROCESS_SEQS))


def _hold_lock_then_hang(path: str, ready: Event) -> None:
    with locked_recording(Path(path), FMT, fsync=False) as rec:
        rec.append(0, chunk_pcm(0))
        with Path(path).open("ab") as f:  # mid-append when killed: PCM written, no index record
            f.write(chunk_pcm(1))
        ready.set()
        time.sleep(60)


def test_lock_is_released_when_the_holder_is_killed(wav: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold_lock_then_hang, args=(str(wav), ready))
    holder.start()
    try:
        assert ready.wait(30)
        with (
            pytest.raises(TimeoutError, match="waiting for the lock"),
            locked_recording(wav, FMT, timeout_s=0.2),
        ):
            pass
    finally:
        holder.kill()  # SIGKILL
        holder.join(10)
    assert lock_path(wav).exists()
    with locked_recording(wav, FMT, timeout_s=5) as rec:
        assert rec.next_seq == 1
        assert rec.recovered  # the killed append is cut off under the lock
        rec.append(1, chunk_pcm(1))
    assert wav.read_bytes() == reference([chunk_pcm(0), chunk_pcm(1)])


def test_locked_recording_creates_the_directory_and_times_out_within_a_process(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "r.wav"
    with locked_recording(path, FMT) as rec:
        rec.append(0, chunk_pcm(0))
        started = time.monotonic()
        with pytest.raises(TimeoutError), locked_recording(path, FMT, timeout_s=0.1):
            pass
        assert time.monotonic() - started < 2
        assert not rec.closed
    assert rec.closed
    with locked_recording(path, FMT, timeout_s=1) as again:
        assert again.next_seq == 1


def test_a_lock_on_a_removed_lock_file_is_taken_again_on_the_current_one(tmp_path: Path) -> None:
    """A meeting deleted while a worker waits for its recording's lock, and a new meeting with the same id
    started: the waiter must end up holding the new lock file, not the removed one, or two writers could
    each hold "the" lock of one recording."""
    path = tmp_path / "meetings" / "m" / "recording.wav"
    path.parent.mkdir(parents=True)
    got_it = threading.Event()
    release = threading.Event()

    def waiter() -> None:
        with recording_lock(path, timeout_s=10):
            got_it.set()
            release.wait(10)

    with recording_lock(path):
        thread = threading.Thread(target=waiter)
        thread.start()
        time.sleep(0.2)  # the waiter has opened the lock file and waits on it
        shutil.rmtree(path.parent)  # deleted ...
        path.parent.mkdir(parents=True)  # ... and the id reused
    try:
        assert got_it.wait(10)
        with pytest.raises(TimeoutError), recording_lock(path, timeout_s=0.2):
            pass  # the waiter holds the lock file that is there now
    finally:
        release.set()
        thread.join(10)


def test_without_create_parent_a_missing_folder_is_never_created(tmp_path: Path) -> None:
    path = tmp_path / "meetings" / "gone" / "recording.wav"
    with pytest.raises(FileNotFoundError), recording_lock(path, create_parent=False):
        pass
    with pytest.raises(FileNotFoundError):
        RecordingFile.open(path, FMT, create_parent=False)
    assert not path.parent.exists()
