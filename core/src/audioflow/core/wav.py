"""WAV parsing, validation and header construction: pure functions, no I/O, no policy.

audioflow accepts integer PCM only (8-, 16-, 24- or 32-bit, 1-8 channels, 8-192 kHz), either as plain
``WAVE_FORMAT_PCM`` (format tag 1) or as ``WAVE_FORMAT_EXTENSIBLE`` (0xFFFE) whose SubFormat is
``KSDATAFORMAT_SUBTYPE_PCM``. Everything else is refused with :class:`~audioflow.core.errors.InvalidWav`
whose ``code`` is stable for clients and whose message names the problem:

``not_wav``, ``not_wave``, ``truncated_header``, ``missing_fmt``, ``data_before_fmt``, ``fmt_too_short``,
``duplicate_fmt``, ``unsupported_encoding``, ``unsupported_bits``, ``unsupported_channels``,
``unsupported_sample_rate``, ``inconsistent_header``, ``no_data_chunk``, ``truncated_data``,
``empty_data``, ``partial_frame``.

No other exception escapes :func:`parse_wav`, whatever the input.

The files audioflow writes use the canonical 44-byte header (RIFF, WAVE, a 16-byte ``fmt `` chunk, then
``data``), built by :func:`canonical_header` and read back by :func:`read_canonical_header`. An 8-bit
recording of an odd number of bytes is written without the RIFF pad byte so that it can keep growing;
readers (including Python's ``wave``) accept that.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final, TypeAlias

from audioflow.core.errors import InvalidWav

__all__ = [
    "CANONICAL_HEADER_SIZE",
    "MAX_CHANNELS",
    "MAX_DATA_LENGTH",
    "MAX_SAMPLE_RATE",
    "MIN_SAMPLE_RATE",
    "STREAMING_SIZE",
    "SUPPORTED_BITS",
    "AudioFormat",
    "WavInfo",
    "canonical_header",
    "parse_wav",
    "pcm_view",
    "read_canonical_header",
    "streaming_header",
]

CANONICAL_HEADER_SIZE: Final = 44
#: The size field value meaning "unknown length" (a live stream).
STREAMING_SIZE: Final = 0xFFFFFFFF
#: Largest ``data`` size a RIFF file may declare: the RIFF size (36 + data) must fit in 32 bits.
MAX_DATA_LENGTH: Final = 0xFFFFFFFF - 36

SUPPORTED_BITS: Final = (8, 16, 24, 32)
MIN_SAMPLE_RATE: Final = 8_000
MAX_SAMPLE_RATE: Final = 192_000
MAX_CHANNELS: Final = 8

WAVE_FORMAT_PCM: Final = 0x0001
WAVE_FORMAT_EXTENSIBLE: Final = 0xFFFE
# KSDATAFORMAT_SUBTYPE_* GUIDs are {XXXXXXXX-0000-0010-8000-00AA00389B71}, stored little-endian; the
# first field is the legacy format tag.
_KSDATAFORMAT_BASE_TAIL: Final = bytes.fromhex("000000001000800000aa00389b71")

_FORMAT_NAMES: Final = {
    0x0002: "Microsoft ADPCM",
    0x0003: "IEEE float",
    0x0006: "A-law",
    0x0007: "mu-law",
    0x0011: "IMA ADPCM",
    0x0016: "ITU G.723 ADPCM",
    0x0031: "GSM 6.10",
    0x0040: "ITU G.721 ADPCM",
    0x0050: "MPEG",
    0x0055: "MP3",
    0x00FF: "AAC",
    0x0160: "Windows Media Audio",
    0x0161: "Windows Media Audio",
    0x1610: "AAC",
    0x2000: "AC-3",
    0x2001: "DTS",
    0x674F: "Ogg Vorbis",
    0xF1AC: "FLAC",
}

_HEADER: Final = struct.Struct("<4sI4s4sIHHIIHH4sI")
_FMT: Final = struct.Struct("<HHIIHH")
_CHUNK: Final = struct.Struct("<4sI")

_Buffer: TypeAlias = bytes | bytearray | memoryview


@dataclass(frozen=True)
class AudioFormat:
    """An integer-PCM audio format. Construction checks that audioflow supports it (ValueError if not)."""

    sample_rate: int
    channels: int
    bits: int

    def __post_init__(self) -> None:
        for name in ("sample_rate", "channels", "bits"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an integer, not {value!r}")
        if self.bits not in SUPPORTED_BITS:
            raise ValueError(f"unsupported bits per sample {self.bits}: use 8, 16, 24 or 32")
        if not 1 <= self.channels <= MAX_CHANNELS:
            raise ValueError(f"unsupported channel count {self.channels}: use 1 to {MAX_CHANNELS}")
        if not MIN_SAMPLE_RATE <= self.sample_rate <= MAX_SAMPLE_RATE:
            raise ValueError(
                f"unsupported sample rate {self.sample_rate} Hz: "
                f"use {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz"
            )

    @property
    def block_align(self) -> int:
        """Bytes per frame (one sample for every channel)."""
        return self.channels * self.bits // 8

    @property
    def byte_rate(self) -> int:
        """Bytes per second."""
        return self.sample_rate * self.block_align

    def describe(self) -> str:
        """Human-readable form, e.g. ``16000 Hz, 1 channel, 16-bit PCM``."""
        plural = "" if self.channels == 1 else "s"
        return f"{self.sample_rate} Hz, {self.channels} channel{plural}, {self.bits}-bit PCM"

    def silence(self, frames: int) -> bytes:
        """``frames`` frames of digital silence (0x80 for unsigned 8-bit PCM, zero otherwise)."""
        if frames < 0:
            raise ValueError(f"frames must be >= 0, not {frames}")
        fill = b"\x80" if self.bits == 8 else b"\x00"
        return fill * (frames * self.block_align)


@dataclass(frozen=True)
class WavInfo:
    """Where a parsed WAV's PCM lies, and in what format."""

    format: AudioFormat
    data_offset: int
    data_length: int

    @property
    def frames(self) -> int:
        return self.data_length // self.format.block_align

    @property
    def duration_s(self) -> float:
        return self.frames / self.format.sample_rate


def _invalid(code: str, message: str) -> InvalidWav:
    return InvalidWav(message, code=code)


def _fourcc(raw: bytes) -> str:
    """A chunk id for a message: printable ASCII as is, anything else as hex."""
    if all(0x20 <= b < 0x7F for b in raw):
        return repr(raw.decode("ascii"))
    return "0x" + raw.hex()


def _encoding_name(tag: int) -> str:
    name = _FORMAT_NAMES.get(tag)
    return f"{name} (format tag {tag})" if name else f"format tag 0x{tag:04X}"


def _as_bytes_view(data: _Buffer) -> memoryview:
    view = memoryview(data)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view


def _parse_fmt(view: memoryview, start: int, size: int) -> AudioFormat:
    """Parse and validate the body of a ``fmt `` chunk at ``view[start:start+size]``."""
    if size < _FMT.size:
        raise _invalid(
            "fmt_too_short", f"fmt chunk too short: {size} bytes, a PCM fmt chunk needs at least 16"
        )
    tag, channels, rate, byte_rate, block_align, bits = _FMT.unpack_from(view, start)
    container_bits = bits
    if tag == WAVE_FORMAT_EXTENSIBLE:
        if size < 40:
            raise _invalid(
                "fmt_too_short",
                f"fmt chunk too short: WAVE_FORMAT_EXTENSIBLE needs 40 bytes, the chunk has {size}",
            )
        cb_size, valid_bits = struct.unpack_from("<HH", view, start + 16)
        if cb_size < 22:
            raise _invalid(
                "fmt_too_short",
                f"fmt chunk too short: WAVE_FORMAT_EXTENSIBLE extension size (cbSize) is {cb_size}, needs 22",
            )
        guid = bytes(view[start + 24 : start + 40])
        sub_tag = int.from_bytes(guid[:2], "little")
        if guid[2:] != _KSDATAFORMAT_BASE_TAIL:
            raise _invalid(
                "unsupported_encoding",
                f"unsupported audio encoding: WAVE_FORMAT_EXTENSIBLE with SubFormat GUID {guid.hex()}; "
                "send integer PCM",
            )
        if sub_tag != WAVE_FORMAT_PCM:
            raise _invalid(
                "unsupported_encoding",
                f"unsupported audio encoding: {_encoding_name(sub_tag)} in WAVE_FORMAT_EXTENSIBLE; "
                "send integer PCM",
            )
        if valid_bits > container_bits:
            raise _invalid(
                "inconsistent_header",
                f"header lies: {valid_bits} valid bits per sample in a {container_bits}-bit container",
            )
    elif tag != WAVE_FORMAT_PCM:
        raise _invalid(
            "unsupported_encoding", f"unsupported audio encoding: {_encoding_name(tag)}; send integer PCM"
        )
    if container_bits not in SUPPORTED_BITS:
        raise _invalid(
            "unsupported_bits", f"unsupported bits per sample: {container_bits}; use 8, 16, 24 or 32"
        )
    if not 1 <= channels <= MAX_CHANNELS:
        raise _invalid(
            "unsupported_channels", f"unsupported channel count: {channels}; use 1 to {MAX_CHANNELS}"
        )
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise _invalid(
            "unsupported_sample_rate",
            f"unsupported sample rate: {rate} Hz; use {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz",
        )
    fmt = AudioFormat(sample_rate=rate, channels=channels, bits=container_bits)
    if block_align != fmt.block_align:
        raise _invalid(
            "inconsistent_header",
            f"header lies: block_align is {block_align} but {channels} channel(s) of {container_bits}-bit "
            f"samples need {fmt.block_align}",
        )
    if byte_rate != fmt.byte_rate:
        raise _invalid(
            "inconsistent_header",
            f"header lies: byte_rate is {byte_rate} but {rate} Hz x {fmt.block_align} bytes per frame "
            f"is {fmt.byte_rate}",
        )
    return fmt


def parse_wav(data: _Buffer) -> WavInfo:
    """Validate a whole WAV file held in memory and say where its PCM is.

    Walks the RIFF chunk list (honouring odd-size pad bytes, skipping chunks such as ``LIST``, ``JUNK``
    or ``fact``) up to the first ``data`` chunk; anything after that chunk is ignored. Raises
    :class:`InvalidWav` with a specific ``code`` for anything that is not supported integer PCM.
    """
    view = _as_bytes_view(data)
    n = len(view)
    magic = bytes(view[:4])
    if magic != b"RIFF":
        if n == 0:
            raise _invalid("not_wav", "not a WAV file: the body is empty")
        if n < 4 and b"RIFF".startswith(magic):
            raise _invalid("truncated_header", f"truncated header: the file is only {n} bytes")
        if magic in (b"RF64", b"RIFX", b"BW64"):
            raise _invalid(
                "not_wav", f"not a WAV file: {magic.decode()} is not supported, expected 'RIFF' at byte 0"
            )
        raise _invalid("not_wav", "not a WAV file: expected 'RIFF' at byte 0")
    if n < 12:
        raise _invalid("truncated_header", f"truncated header: the file is only {n} bytes, a WAV needs 44")
    if bytes(view[8:12]) != b"WAVE":
        raise _invalid(
            "not_wave", f"not a WAV file: RIFF form type is {_fourcc(bytes(view[8:12]))}, not 'WAVE'"
        )

    fmt: AudioFormat | None = None
    pos = 12
    while True:
        if pos >= n:
            if fmt is None:
                raise _invalid(
                    "missing_fmt", "no fmt chunk: the file ends before any audio format is declared"
                )
            raise _invalid("no_data_chunk", "no data chunk: the file ends without any audio data")
        if pos + _CHUNK.size > n:
            raise _invalid(
                "truncated_header",
                f"truncated header: chunk header at byte {pos} needs 8 bytes, only {n - pos} present",
            )
        raw_id, size = _CHUNK.unpack_from(view, pos)
        body = pos + _CHUNK.size
        available = n - body
        if raw_id == b"data":
            if fmt is None:
                raise _invalid(
                    "data_before_fmt", "data chunk before fmt chunk: the audio format is not known"
                )
            if size == STREAMING_SIZE:
                raise _invalid(
                    "empty_data",
                    "no audio data: the data chunk declares an unknown length (0xFFFFFFFF, a streaming "
                    "header); send a complete WAV file",
                )
            if size == 0:
                raise _invalid("empty_data", "no audio data: the data chunk is empty")
            if size > available:
                raise _invalid(
                    "truncated_data",
                    f"truncated data: the data chunk declares {size} bytes but only {available} are present",
                )
            if size % fmt.block_align:
                raise _invalid(
                    "partial_frame",
                    f"partial frame: {size} data bytes is not a multiple of the {fmt.block_align}-byte frame "
                    f"({fmt.describe()})",
                )
            return WavInfo(format=fmt, data_offset=body, data_length=size)
        if size > available:
            raise _invalid(
                "truncated_header",
                f"truncated header: {_fourcc(raw_id)} chunk at byte {pos} declares {size} bytes "
                f"but only {available} are present",
            )
        if raw_id == b"fmt ":
            if fmt is not None:
                raise _invalid("duplicate_fmt", f"duplicate fmt chunk at byte {pos}")
            fmt = _parse_fmt(view, body, size)
        pos = body + size + (size & 1)


def pcm_view(data: _Buffer, info: WavInfo) -> memoryview:
    """A zero-copy byte view of the PCM that :func:`parse_wav` found in ``data``."""
    view = _as_bytes_view(data)
    end = info.data_offset + info.data_length
    if info.data_offset < 0 or info.data_length < 0 or end > len(view):
        raise _invalid(
            "truncated_data",
            f"truncated data: PCM at {info.data_offset}..{end} but the buffer has {len(view)} bytes",
        )
    return view[info.data_offset : end]


def _pack_header(fmt: AudioFormat, riff_size: int, data_size: int) -> bytes:
    return _HEADER.pack(
        b"RIFF",
        riff_size,
        b"WAVE",
        b"fmt ",
        16,
        WAVE_FORMAT_PCM,
        fmt.channels,
        fmt.sample_rate,
        fmt.byte_rate,
        fmt.block_align,
        fmt.bits,
        b"data",
        data_size,
    )


def canonical_header(fmt: AudioFormat, data_length: int) -> bytes:
    """The 44-byte RIFF/WAVE/fmt(16)/data header for ``data_length`` bytes of PCM (no pad byte counted)."""
    if not 0 <= data_length <= MAX_DATA_LENGTH:
        raise ValueError(f"data length {data_length} is outside 0..{MAX_DATA_LENGTH}")
    return _pack_header(fmt, 36 + data_length, data_length)


def streaming_header(fmt: AudioFormat) -> bytes:
    """The 44-byte header of a live stream: RIFF and data sizes are 0xFFFFFFFF (unknown length)."""
    return _pack_header(fmt, STREAMING_SIZE, STREAMING_SIZE)


def read_canonical_header(head: bytes | bytearray | memoryview) -> tuple[AudioFormat, int]:
    """Parse a canonical header written by :func:`canonical_header`; return ``(format, data_length)``.

    Only the first 44 bytes are read. The RIFF size is not checked (it is redundant with the data size,
    and a reader may see the two patched at slightly different moments). Raises :class:`InvalidWav`
    if the bytes are not such a header.
    """
    view = _as_bytes_view(head)
    if len(view) < CANONICAL_HEADER_SIZE:
        raise _invalid("truncated_header", f"truncated header: {len(view)} bytes, a canonical header has 44")
    riff, _riff_size, wave_id, fmt_id, fmt_size, *_fields, data_id, data_length = _HEADER.unpack_from(view)
    if riff != b"RIFF" or wave_id != b"WAVE":
        raise _invalid("not_wav", "not a WAV file: expected 'RIFF' at byte 0 and 'WAVE' at byte 8")
    if fmt_id != b"fmt " or fmt_size != 16 or data_id != b"data":
        raise _invalid(
            "not_canonical", "not a canonical header: expected a 16-byte fmt chunk at byte 12 and data at 36"
        )
    fmt = _parse_fmt(view, 20, 16)
    if data_length > MAX_DATA_LENGTH:
        raise _invalid(
            "not_canonical",
            f"not a canonical header: data size 0x{data_length:08X} is an unknown length "
            "or exceeds the RIFF limit",
        )
    return fmt, data_length
