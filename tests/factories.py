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


def extensible_wav(pcm: bytes, fmt: AudioFormat, subformat_tag: int = 1) -> bytes:
    """WAVE_FORMAT_EXTENSIBLE with the given subformat (1 = PCM, 3 = IEEE float)."""
    guid_tail = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
    fmt_body = (
        struct.pack(
            "<HHIIHHHHI",
            0xFFFE,
            fmt.channels,
            fmt.sample_rate,
            fmt.byte_rate,
            fmt.block_align,
            fmt.bits,
            22,
            fmt.bits,
            0,
        )
        + struct.pack("<H", subformat_tag)
        + guid_tail
    )
    chunks = (
        b"fmt " + struct.pack("<I", len(fmt_body)) + fmt_body + b"data" + struct.pack("<I", len(pcm)) + pcm
    )
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks
