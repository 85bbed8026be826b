"""Builders for test inputs: WAV bytes written independently of the code under test."""

from __future__ import annotations

import io
import math
import struct
import wave

from audioflow.core.wav import AudioFormat

SPEECH_FORMAT = AudioFormat(sample_rate=16000, channels=1, bits=16)


def wav_bytes(pcm: bytes, fmt: AudioFormat = SPEECH_FORMAT) -> bytes:
    """A WAV file written by Python's own ``wave`` module."""
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(fmt.channels)
        writer.setsampwidth(fmt.bits // 8)
        writer.setframerate(fmt.sample_rate)
        writer.writeframes(pcm)
    return out.getvalue()


def tone_pcm(seconds: float, fmt: AudioFormat = SPEECH_FORMAT, freq: float = 440.0, seed: int = 0) -> bytes:
    """16-bit PCM of a tone whose phase depends on ``seed``, so every chunk has distinct bytes."""
    frames = round(seconds * fmt.sample_rate)
    samples = (
        int(8000 * math.sin(2 * math.pi * freq * (i + seed * 977) / fmt.sample_rate))
        for i in range(frames)
        for _ in range(fmt.channels)
    )
    return struct.pack(f"<{frames * fmt.channels}h", *samples)


def riff_chunk(chunk_id: bytes, body: bytes, *, declared: int | None = None, pad: bool = True) -> bytes:
    """One RIFF chunk: id, size, body, and the pad byte an odd-sized body takes (``pad=False`` leaves
    it out). ``declared`` makes the header lie about the size."""
    size = len(body) if declared is None else declared
    return struct.pack("<4sI", chunk_id, size) + body + (b"\x00" if pad and len(body) % 2 else b"")


def riff(*chunks: bytes, form: bytes = b"WAVE") -> bytes:
    """A RIFF file of ``form`` holding already-built chunks (see :func:`riff_chunk`), in that order."""
    body = form + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def fmt_body(
    tag: int = 1,
    channels: int = 1,
    rate: int = 16000,
    bits: int = 16,
    *,
    block_align: int | None = None,
    byte_rate: int | None = None,
) -> bytes:
    """The 16-byte body of a ``fmt `` chunk; alignment and byte rate follow from the rest unless given."""
    align = channels * bits // 8 if block_align is None else block_align
    rate_bytes = rate * align if byte_rate is None else byte_rate
    return struct.pack("<HHIIHH", tag, channels, rate, rate_bytes, align, bits)


def extensible_wav(pcm: bytes, fmt: AudioFormat, subformat_tag: int = 1) -> bytes:
    """WAVE_FORMAT_EXTENSIBLE with the given subformat (1 = PCM, 3 = IEEE float)."""
    guid_tail = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
    extension = struct.pack("<HHI", 22, fmt.bits, 0) + struct.pack("<H", subformat_tag) + guid_tail
    fmt_chunk = fmt_body(0xFFFE, fmt.channels, fmt.sample_rate, fmt.bits) + extension
    return riff(riff_chunk(b"fmt ", fmt_chunk), riff_chunk(b"data", pcm, pad=False))
