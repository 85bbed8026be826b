"""WAV parsing, validation and headers (audioflow.core.wav)."""

from __future__ import annotations

import io
import random
import shutil
import struct
import subprocess
import wave
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audioflow.core.errors import InvalidWav
from audioflow.core.wav import (
    MAX_DATA_LENGTH,
    AudioFormat,
    WavInfo,
    canonical_header,
    parse_wav,
    pcm_view,
    read_canonical_header,
    streaming_header,
)
from tests.factories import fmt_body, riff, riff_chunk

PCM_GUID = bytes.fromhex("0100000000001000800000aa00389b71")
FLOAT_GUID = bytes.fromhex("0300000000001000800000aa00389b71")
AMBISONIC_GUID = bytes.fromhex("0100000021076fd3f15d11d1be97d53c8c2ad6f7")[:16]


def pcm_bytes(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def wave_file(fmt: AudioFormat, pcm: bytes) -> bytes:
    """A WAV written by Python's ``wave`` module."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(fmt.channels)
        writer.setsampwidth(fmt.bits // 8)
        writer.setframerate(fmt.sample_rate)
        writer.writeframes(pcm)
    return buffer.getvalue()


def extensible_body(
    channels: int = 2,
    rate: int = 48000,
    bits: int = 24,
    *,
    valid_bits: int | None = None,
    guid: bytes = PCM_GUID,
    cb_size: int = 22,
) -> bytes:
    align = channels * bits // 8
    return struct.pack(
        "<HHIIHHHHI16s",
        0xFFFE,
        channels,
        rate,
        rate * align,
        align,
        bits,
        cb_size,
        bits if valid_bits is None else valid_bits,
        0x3 if channels == 2 else 0,
        guid,
    )


F16 = AudioFormat(16000, 1, 16)
PCM320 = pcm_bytes(320)
GOOD = riff(riff_chunk(b"fmt ", fmt_body()), riff_chunk(b"data", PCM320))


# -- AudioFormat and WavInfo ----------------------------------------------------------------------------


def test_audio_format_properties_and_description() -> None:
    assert F16.block_align == 2
    assert F16.byte_rate == 32000
    assert F16.describe() == "16000 Hz, 1 channel, 16-bit PCM"
    stereo = AudioFormat(44100, 2, 24)
    assert stereo.block_align == 6
    assert stereo.byte_rate == 264600
    assert stereo.describe() == "44100 Hz, 2 channels, 24-bit PCM"


@pytest.mark.parametrize(
    ("rate", "channels", "bits", "needle"),
    [
        (16000, 1, 12, "bits"),
        (16000, 0, 16, "channel"),
        (16000, 9, 16, "channel"),
        (7999, 1, 16, "sample rate"),
        (192001, 1, 16, "sample rate"),
    ],
)
def test_audio_format_refuses_unsupported(rate: int, channels: int, bits: int, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        AudioFormat(rate, channels, bits)


def test_silence_is_mid_scale() -> None:
    assert AudioFormat(8000, 2, 8).silence(3) == b"\x80" * 6
    assert AudioFormat(8000, 2, 16).silence(3) == b"\x00" * 12
    assert F16.silence(0) == b""


def test_wav_info_frames_and_duration() -> None:
    info = WavInfo(format=AudioFormat(8000, 2, 16), data_offset=44, data_length=32000)
    assert info.frames == 8000
    assert info.duration_s == 1.0


# -- accepting ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fmt",
    [
        AudioFormat(8000, 1, 8),
        AudioFormat(16000, 1, 16),
        AudioFormat(44100, 2, 16),
        AudioFormat(48000, 2, 24),
        AudioFormat(96000, 6, 32),
        AudioFormat(192000, 8, 16),
    ],
    ids=lambda f: f.describe(),
)
def test_round_trip_with_python_wave(fmt: AudioFormat) -> None:
    pcm = pcm_bytes(fmt.block_align * 101, seed=fmt.sample_rate)
    data = wave_file(fmt, pcm)
    info = parse_wav(data)
    assert info.format == fmt
    assert info.data_offset == 44
    assert info.frames == 101
    assert bytes(pcm_view(data, info)) == pcm
    # Python's wave writes exactly our canonical header.
    assert data[:44] == canonical_header(fmt, len(pcm))


def test_odd_sized_8bit_data_with_and_without_pad_byte() -> None:
    fmt = AudioFormat(8000, 1, 8)
    pcm = pcm_bytes(101)
    unpadded = wave_file(fmt, pcm)  # Python's wave writes no pad byte after odd-sized data
    padded = riff(riff_chunk(b"fmt ", fmt_body(bits=8, rate=8000)), riff_chunk(b"data", pcm))
    assert len(padded) == 44 + 101 + 1
    for data in (unpadded, padded):
        info = parse_wav(data)
        assert info.format == fmt
        assert info.data_length == 101
        assert bytes(pcm_view(data, info)) == pcm


def test_accepts_bytearray_and_memoryview() -> None:
    for buffer in (bytearray(GOOD), memoryview(GOOD), memoryview(bytearray(GOOD))):
        info = parse_wav(buffer)
        assert bytes(pcm_view(buffer, info)) == PCM320


def test_pcm_view_is_zero_copy_slice() -> None:
    info = parse_wav(GOOD)
    view = pcm_view(GOOD, info)
    assert isinstance(view, memoryview)
    assert view.nbytes == 320
    assert view.obj is GOOD


def test_pcm_view_refuses_short_buffer() -> None:
    info = parse_wav(GOOD)
    with pytest.raises(InvalidWav) as caught:
        pcm_view(GOOD[:100], info)
    assert caught.value.code == "truncated_data"


def test_list_chunk_before_data_and_odd_chunk_padding() -> None:
    data = riff(
        riff_chunk(b"fmt ", fmt_body()),
        riff_chunk(b"LIST", b"INFOISFT" + struct.pack("<I", 5) + b"sox\x00\x00" + b"\x00"),
        riff_chunk(b"JUNK", b"abc"),  # odd size: one pad byte follows
        riff_chunk(b"fact", struct.pack("<I", 160)),
        riff_chunk(b"data", PCM320),
        riff_chunk(b"LIST", b"trailing metadata is ignored"),
    )
    info = parse_wav(data)
    assert info.format == F16
    assert bytes(pcm_view(data, info)) == PCM320
    assert data[info.data_offset - 8 : info.data_offset - 4] == b"data"


def test_unknown_chunk_before_fmt_is_skipped() -> None:
    data = riff(riff_chunk(b"JUNK", b"x" * 27), riff_chunk(b"fmt ", fmt_body()), riff_chunk(b"data", PCM320))
    assert parse_wav(data).format == F16


def test_riff_size_is_not_trusted() -> None:
    data = bytearray(GOOD)
    data[4:8] = b"\x00\x00\x00\x00"
    assert parse_wav(bytes(data)).data_length == 320


def test_fmt_chunk_longer_than_16_bytes() -> None:
    data = riff(riff_chunk(b"fmt ", fmt_body() + b"\x00\x00"), riff_chunk(b"data", PCM320))
    assert parse_wav(data).format == F16


def test_extensible_24bit_pcm_accepted() -> None:
    pcm = pcm_bytes(6 * 50)
    data = riff(riff_chunk(b"fmt ", extensible_body()), riff_chunk(b"data", pcm))
    info = parse_wav(data)
    assert info.format == AudioFormat(48000, 2, 24)
    assert info.format.bits == 24
    assert bytes(pcm_view(data, info)) == pcm


def test_extensible_with_fewer_valid_bits_uses_container_size() -> None:
    data = riff(riff_chunk(b"fmt ", extensible_body(valid_bits=20)), riff_chunk(b"data", pcm_bytes(60)))
    assert parse_wav(data).format.bits == 24


def test_extensible_zero_valid_bits_accepted() -> None:
    data = riff(riff_chunk(b"fmt ", extensible_body(valid_bits=0)), riff_chunk(b"data", pcm_bytes(60)))
    assert parse_wav(data).format.bits == 24


# -- refusing -------------------------------------------------------------------------------------------

REFUSALS: list[tuple[str, bytes, str, str]] = [
    ("empty body", b"", "not_wav", "empty"),
    ("ogg file", b"OggS" + b"\x00" * 60, "not_wav", "expected 'RIFF' at byte 0"),
    ("RF64", b"RF64" + GOOD[4:], "not_wav", "RF64"),
    ("avi", riff(riff_chunk(b"avih", b"\x00" * 8), form=b"AVI "), "not_wave", "'AVI '"),
    ("three bytes", b"RIF", "truncated_header", "truncated header"),
    ("no form type", b"RIFF\x24\x00\x00\x00WA", "truncated_header", "truncated header"),
    ("cut in fmt chunk", GOOD[:30], "truncated_header", "declares 16 bytes"),
    ("cut in chunk header", GOOD[:16], "truncated_header", "chunk header at byte 12"),
    ("no chunks at all", riff(), "missing_fmt", "no fmt chunk"),
    ("only a LIST chunk", riff(riff_chunk(b"LIST", b"INFO")), "missing_fmt", "no fmt chunk"),
    (
        "data before fmt",
        riff(riff_chunk(b"data", PCM320), riff_chunk(b"fmt ", fmt_body())),
        "data_before_fmt",
        "before fmt",
    ),
    (
        "fmt of 14 bytes",
        riff(riff_chunk(b"fmt ", fmt_body()[:14]), riff_chunk(b"data", PCM320)),
        "fmt_too_short",
        "14 bytes",
    ),
    (
        "two fmt chunks",
        riff(riff_chunk(b"fmt ", fmt_body()), riff_chunk(b"fmt ", fmt_body()), riff_chunk(b"data", PCM320)),
        "duplicate_fmt",
        "duplicate fmt",
    ),
    (
        "IEEE float",
        riff(riff_chunk(b"fmt ", fmt_body(tag=3, bits=32)), riff_chunk(b"data", PCM320)),
        "unsupported_encoding",
        "unsupported audio encoding: IEEE float (format tag 3); send integer PCM",
    ),
    (
        "MP3",
        riff(
            riff_chunk(b"fmt ", fmt_body(tag=0x55, bits=0, block_align=1, byte_rate=4000)),
            riff_chunk(b"data", PCM320),
        ),
        "unsupported_encoding",
        "MP3 (format tag 85)",
    ),
    (
        "IMA ADPCM",
        riff(riff_chunk(b"fmt ", fmt_body(tag=0x11, bits=4, block_align=256)), riff_chunk(b"data", PCM320)),
        "unsupported_encoding",
        "IMA ADPCM",
    ),
    (
        "A-law",
        riff(riff_chunk(b"fmt ", fmt_body(tag=6, bits=8)), riff_chunk(b"data", PCM320)),
        "unsupported_encoding",
        "A-law",
    ),
    (
        "mu-law",
        riff(riff_chunk(b"fmt ", fmt_body(tag=7, bits=8)), riff_chunk(b"data", PCM320)),
        "unsupported_encoding",
        "mu-law",
    ),
    (
        "unknown tag",
        riff(riff_chunk(b"fmt ", fmt_body(tag=0x1234)), riff_chunk(b"data", PCM320)),
        "unsupported_encoding",
        "format tag 0x1234",
    ),
    (
        "extensible float",
        riff(
            riff_chunk(b"fmt ", extensible_body(bits=32, guid=FLOAT_GUID)), riff_chunk(b"data", PCM320[:256])
        ),
        "unsupported_encoding",
        "IEEE float",
    ),
    (
        "extensible unknown subformat",
        riff(riff_chunk(b"fmt ", extensible_body(guid=AMBISONIC_GUID)), riff_chunk(b"data", PCM320[:300])),
        "unsupported_encoding",
        "SubFormat GUID",
    ),
    (
        "extensible chunk of 18 bytes",
        riff(riff_chunk(b"fmt ", extensible_body()[:18]), riff_chunk(b"data", PCM320[:300])),
        "fmt_too_short",
        "needs 40 bytes",
    ),
    (
        "extensible cbSize 0",
        riff(riff_chunk(b"fmt ", extensible_body(cb_size=0)), riff_chunk(b"data", PCM320[:300])),
        "fmt_too_short",
        "cbSize",
    ),
    (
        "extensible valid bits above container",
        riff(riff_chunk(b"fmt ", extensible_body(valid_bits=32)), riff_chunk(b"data", PCM320[:300])),
        "inconsistent_header",
        "32 valid bits per sample in a 24-bit container",
    ),
    (
        "block_align lies",
        riff(riff_chunk(b"fmt ", fmt_body(block_align=4, byte_rate=32000)), riff_chunk(b"data", PCM320)),
        "inconsistent_header",
        "header lies: block_align is 4",
    ),
    (
        "byte_rate lies",
        riff(riff_chunk(b"fmt ", fmt_body(byte_rate=16000)), riff_chunk(b"data", PCM320)),
        "inconsistent_header",
        "header lies: byte_rate is 16000",
    ),
    (
        "12-bit",
        riff(riff_chunk(b"fmt ", fmt_body(bits=12)), riff_chunk(b"data", PCM320)),
        "unsupported_bits",
        "12",
    ),
    (
        "64-bit",
        riff(riff_chunk(b"fmt ", fmt_body(bits=64)), riff_chunk(b"data", PCM320)),
        "unsupported_bits",
        "64",
    ),
    (
        "0 channels",
        riff(riff_chunk(b"fmt ", fmt_body(channels=0)), riff_chunk(b"data", PCM320)),
        "unsupported_channels",
        "0",
    ),
    (
        "9 channels",
        riff(riff_chunk(b"fmt ", fmt_body(channels=9)), riff_chunk(b"data", PCM320)),
        "unsupported_channels",
        "9",
    ),
    (
        "4 kHz",
        riff(riff_chunk(b"fmt ", fmt_body(rate=4000)), riff_chunk(b"data", PCM320)),
        "unsupported_sample_rate",
        "4000 Hz",
    ),
    (
        "384 kHz",
        riff(riff_chunk(b"fmt ", fmt_body(rate=384000)), riff_chunk(b"data", PCM320)),
        "unsupported_sample_rate",
        "384000 Hz",
    ),
    (
        "data declares more than present",
        riff(riff_chunk(b"fmt ", fmt_body())) + struct.pack("<4sI", b"data", 3200) + PCM320[:100],
        "truncated_data",
        "declares 3200 bytes but only 100 are present",
    ),
    (
        "streaming data size",
        streaming_header(F16) + PCM320,
        "empty_data",
        "unknown length",
    ),
    (
        "zero data",
        riff(riff_chunk(b"fmt ", fmt_body()), riff_chunk(b"data", b"")),
        "empty_data",
        "no audio data",
    ),
    (
        "partial frame",
        riff(riff_chunk(b"fmt ", fmt_body()), riff_chunk(b"data", PCM320[:7])),
        "partial_frame",
        "7 data bytes is not a multiple of the 2-byte frame",
    ),
    ("no data chunk", riff(riff_chunk(b"fmt ", fmt_body())), "no_data_chunk", "no data chunk"),
    (
        "LIST chunk past the end",
        riff(riff_chunk(b"fmt ", fmt_body())) + struct.pack("<4sI", b"LIST", 1000) + b"INFO",
        "truncated_header",
        "'LIST' chunk at byte 36 declares 1000 bytes",
    ),
]


@pytest.mark.parametrize(("data", "code", "needle"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_refusals_name_the_problem(data: bytes, code: str, needle: str) -> None:
    with pytest.raises(InvalidWav) as caught:
        parse_wav(data)
    assert caught.value.code == code
    assert caught.value.http_status == 400
    assert needle in caught.value.message
    assert str(caught.value) == caught.value.message


# -- headers we write -----------------------------------------------------------------------------------


def test_canonical_header_bytes() -> None:
    expected = bytes.fromhex(
        "52494646"  # RIFF
        "64010000"  # 36 + 320
        "57415645"  # WAVE
        "666d7420"  # fmt
        "10000000"  # 16
        "0100"  # PCM
        "0100"  # 1 channel
        "803e0000"  # 16000 Hz
        "007d0000"  # 32000 bytes/s
        "0200"  # block align 2
        "1000"  # 16 bits
        "64617461"  # data
        "40010000"  # 320
    )
    assert canonical_header(F16, 320) == expected
    assert len(expected) == 44


@pytest.mark.parametrize(
    "fmt", [AudioFormat(8000, 1, 8), AudioFormat(48000, 2, 24), AudioFormat(22050, 4, 32)]
)
def test_canonical_header_read_back_by_wave(fmt: AudioFormat) -> None:
    pcm = pcm_bytes(fmt.block_align * 40)
    with wave.open(io.BytesIO(canonical_header(fmt, len(pcm)) + pcm), "rb") as reader:
        assert reader.getframerate() == fmt.sample_rate
        assert reader.getnchannels() == fmt.channels
        assert reader.getsampwidth() * 8 == fmt.bits
        assert reader.getnframes() == 40
        assert reader.readframes(40) == pcm


def test_canonical_header_limits() -> None:
    assert canonical_header(F16, 0)[40:44] == b"\x00\x00\x00\x00"
    assert canonical_header(F16, MAX_DATA_LENGTH)[4:8] == b"\xff\xff\xff\xff"
    with pytest.raises(ValueError, match="outside"):
        canonical_header(F16, MAX_DATA_LENGTH + 1)
    with pytest.raises(ValueError, match="outside"):
        canonical_header(F16, -1)


def test_streaming_header() -> None:
    head = streaming_header(F16)
    assert len(head) == 44
    assert head[4:8] == b"\xff\xff\xff\xff"
    assert head[40:44] == b"\xff\xff\xff\xff"
    assert head[8:40] == canonical_header(F16, 0)[8:40]


def test_read_canonical_header_round_trip() -> None:
    for fmt in (F16, AudioFormat(48000, 2, 24), AudioFormat(8000, 8, 8)):
        assert read_canonical_header(canonical_header(fmt, 1234 * fmt.block_align)) == (
            fmt,
            1234 * fmt.block_align,
        )
    # Only the first 44 bytes matter.
    assert read_canonical_header(GOOD) == (F16, 320)


@pytest.mark.parametrize(
    ("head", "code"),
    [
        (canonical_header(F16, 320)[:43], "truncated_header"),
        (b"RIFX" + canonical_header(F16, 320)[4:], "not_wav"),
        (streaming_header(F16), "not_canonical"),
        (
            riff(riff_chunk(b"LIST", b"INFO"), riff_chunk(b"fmt ", fmt_body()), riff_chunk(b"data", PCM320)),
            "not_canonical",
        ),
        (
            riff(riff_chunk(b"fmt ", fmt_body(tag=3, bits=32)), riff_chunk(b"data", PCM320)),
            "unsupported_encoding",
        ),
        (
            riff(riff_chunk(b"fmt ", fmt_body(byte_rate=1)), riff_chunk(b"data", PCM320)),
            "inconsistent_header",
        ),
    ],
)
def test_read_canonical_header_refuses(head: bytes, code: str) -> None:
    with pytest.raises(InvalidWav) as caught:
        read_canonical_header(head)
    assert caught.value.code == code


# -- files written by other tools ------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("sox") is None, reason="sox is not installed")
@pytest.mark.parametrize(
    ("args", "fmt"),
    [
        (["-b", "16", "-c", "1", "-r", "16000"], AudioFormat(16000, 1, 16)),
        (["-b", "24", "-c", "2", "-r", "48000"], AudioFormat(48000, 2, 24)),  # WAVE_FORMAT_EXTENSIBLE
        (["-b", "8", "-c", "3", "-r", "8000"], AudioFormat(8000, 3, 8)),
        (["-b", "32", "-c", "1", "-r", "44100", "-e", "signed-integer"], AudioFormat(44100, 1, 32)),
    ],
)
def test_files_written_by_sox(tmp_path: Path, args: list[str], fmt: AudioFormat) -> None:
    out = tmp_path / "sox.wav"
    subprocess.run(
        ["sox", "-n", *args, str(out), "synth", "0.1", "sine", "440"], check=True, capture_output=True
    )
    data = out.read_bytes()
    info = parse_wav(data)
    assert info.format == fmt
    assert info.frames == round(0.1 * fmt.sample_rate)


@pytest.mark.skipif(shutil.which("sox") is None, reason="sox is not installed")
def test_sox_float_refused(tmp_path: Path) -> None:
    out = tmp_path / "float.wav"
    subprocess.run(
        ["sox", "-n", "-e", "floating-point", "-b", "32", str(out), "synth", "0.05", "sine", "440"],
        check=True,
        capture_output=True,
    )
    with pytest.raises(InvalidWav) as caught:
        parse_wav(out.read_bytes())
    assert caught.value.code == "unsupported_encoding"
    assert "IEEE float" in caught.value.message


@pytest.mark.skipif(shutil.which("flite") is None, reason="flite is not installed")
def test_file_written_by_flite(tmp_path: Path) -> None:
    out = tmp_path / "flite.wav"
    subprocess.run(["flite", "-t", "hello world", "-o", str(out)], check=True, capture_output=True)
    info = parse_wav(out.read_bytes())
    assert info.format.bits == 16
    assert info.format.channels == 1
    assert info.duration_s > 0.3


# -- robustness -----------------------------------------------------------------------------------------


def _parse_or_invalid(data: bytes) -> None:
    try:
        info = parse_wav(data)
    except InvalidWav as exc:
        assert exc.code != "invalid_wav"  # every refusal carries a specific code
        assert exc.message
        return
    view = pcm_view(data, info)
    assert view.nbytes == info.data_length > 0
    assert info.data_length % info.format.block_align == 0


FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=200))
def test_arbitrary_bytes_only_raise_invalid_wav(data: bytes) -> None:
    _parse_or_invalid(data)


@FUZZ
@given(st.binary(max_size=200))
def test_arbitrary_bytes_after_riff_wave_only_raise_invalid_wav(tail: bytes) -> None:
    _parse_or_invalid(b"RIFF\x00\x00\x00\x00WAVE" + tail)


_CHUNK_IDS = st.sampled_from([b"fmt ", b"data", b"LIST", b"JUNK", b"fact", b"\x00\x00\x00\x00"])


@FUZZ
@given(
    st.lists(
        st.tuples(
            _CHUNK_IDS, st.one_of(st.binary(max_size=48), st.builds(fmt_body), st.builds(extensible_body))
        ),
        max_size=5,
    )
)
def test_random_chunk_lists_only_raise_invalid_wav(chunks: list[tuple[bytes, bytes]]) -> None:
    _parse_or_invalid(riff(*(riff_chunk(cid, body) for cid, body in chunks)))


_VALID_FILES = [
    GOOD,
    wave_file(AudioFormat(8000, 1, 8), pcm_bytes(33)),
    riff(
        riff_chunk(b"fmt ", extensible_body()),
        riff_chunk(b"LIST", b"INFOabc"),
        riff_chunk(b"data", pcm_bytes(60)),
    ),
]


@FUZZ
@given(
    st.sampled_from(_VALID_FILES),
    st.lists(st.tuples(st.integers(0, 120), st.integers(0, 255)), max_size=6),
    st.one_of(st.none(), st.integers(0, 400)),
)
def test_mutated_and_truncated_files_only_raise_invalid_wav(
    original: bytes, edits: list[tuple[int, int]], cut: int | None
) -> None:
    data = bytearray(original)
    for position, value in edits:
        if position < len(data):
            data[position] = value
    if cut is not None:
        del data[cut:]
    _parse_or_invalid(bytes(data))


def test_every_truncation_of_a_valid_file_is_refused() -> None:
    for cut in range(len(GOOD)):
        with pytest.raises(InvalidWav) as caught:
            parse_wav(GOOD[:cut])
        expected = "truncated_data" if cut >= 44 else {0: "not_wav", 36: "no_data_chunk"}.get(cut)
        if expected is not None:
            assert caught.value.code == expected, cut
