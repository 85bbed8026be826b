"""Real human speech with its reference text, from Debian packages (`make speech-corpora`); nothing of
it is committed.

- **LibriVox**: five sentences of *Sense and Sensibility* read by a volunteer (pocketsphinx-testdata,
  16 kHz WAV, ~25 s) with their transcription.
- **Asterisk prompts**: Allison Smith's telephone prompts (asterisk-core-sounds-en-g722, 16 kHz G.722,
  decoded with ffmpeg and cached under ``.tools/speech-corpora/``) with the texts of
  asterisk-core-sounds-en. A prompt is left out when it has no audio or no text, when its text has a
  stage note (``[beep]``, ``(10 seconds of silence)``), symbols read out as words (``press * ...``),
  or a number of three digits or more (read digit by digit or not: the text does not say).

`meeting` strings utterances of both into one deterministic "meeting" with short pauses between
them; `ci_fixture` is a short one, mostly LibriVox, for a CI test. Score them with
`audioflow.workers.stt.wer.real_speech_wer`.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import random
import re
import shutil
import subprocess
import wave
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

from audioflow.core.wav import AudioFormat

PACKAGES = ("pocketsphinx-testdata", "asterisk-core-sounds-en-g722", "asterisk-core-sounds-en", "ffmpeg")
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
PROMPTS = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
PROMPT_TEXTS = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
CACHE = Path(__file__).resolve().parents[1] / ".tools" / "speech-corpora"
FORMAT = AudioFormat(sample_rate=16000, channels=1, bits=16)
G722_BYTES_PER_S = 8000  # 64 kbit/s
PAUSE_S = (0.3, 0.8)  # between two utterances of a meeting
MEETING_WORDS = 4  # a prompt shorter than this is a menu word, not a sentence: not put in meetings
CI_SECONDS = 35.0

_TRANSCRIPT_LINE = re.compile(r"^<s>\s*(?P<text>.*?)\s*</s>\s*\((?P<id>[^)\s]+)\)\s*$")
_UNSAID = re.compile(r"[\[\]()]|[^\w\s.,;:!?'\"-]|\d{3}|\d[.,]\d")


class CorporaMissing(RuntimeError):
    """The Debian packages with the speech are not installed."""


Source = Literal["librivox", "asterisk"]


@dataclass(frozen=True)
class Utterance:
    name: str  # "librivox/<id>" or "asterisk/<prompt>", the prompt's subfolder included ("digits/1")
    source: Source
    path: Path
    text: str

    @property
    def seconds(self) -> float:
        if self.source == "asterisk":
            return self.path.stat().st_size / G722_BYTES_PER_S
        with wave.open(str(self.path), "rb") as w:
            return w.getnframes() / w.getframerate()

    def pcm(self) -> bytes:
        """s16le mono 16 kHz samples."""
        if self.source == "librivox":
            with wave.open(str(self.path), "rb") as w:
                return w.readframes(w.getnframes())
        return _decoded(self.path)


@dataclass(frozen=True)
class Placed:
    utterance: Utterance
    start_s: float
    end_s: float


@dataclass(frozen=True)
class Meeting:
    fmt: AudioFormat
    pcm: bytes
    parts: tuple[Placed, ...]  # in order, with where each one sounds

    @property
    def reference(self) -> str:
        return "\n".join(p.utterance.text for p in self.parts)

    @property
    def seconds(self) -> float:
        return len(self.pcm) / self.fmt.block_align / self.fmt.sample_rate

    def head(self, count: int) -> Meeting:
        """Its first ``count`` utterances (a smoke test's meeting)."""
        parts = self.parts[:count]
        end = round(parts[-1].end_s * self.fmt.sample_rate) * self.fmt.block_align
        return Meeting(self.fmt, self.pcm[:end], parts)


def require() -> None:
    """Raise `CorporaMissing` naming the make target when a package is not installed."""
    missing = [
        package
        for package, there in zip(
            PACKAGES,
            (LIBRIVOX / "transcription", PROMPTS / "digits", PROMPT_TEXTS, shutil.which("ffmpeg")),
            strict=True,
        )
        if there is None or not Path(there).exists()
    ]
    if missing:
        raise CorporaMissing(
            f"the real-speech corpora need Debian's {', '.join(missing)}: run `make speech-corpora`"
        )


@cache
def librivox() -> tuple[Utterance, ...]:
    require()
    found = []
    for line in (LIBRIVOX / "transcription").read_text().splitlines():
        match = _TRANSCRIPT_LINE.match(line)
        if match is None or not match["text"]:
            continue
        path = LIBRIVOX / f"{match['id']}.wav"
        if path.exists():
            found.append(Utterance(f"librivox/{match['id']}", "librivox", path, match["text"]))
    return tuple(found)


@cache
def prompts() -> tuple[Utterance, ...]:
    require()
    found = []
    for line in gzip.decompress(PROMPT_TEXTS.read_bytes()).decode().splitlines():
        name, colon, text = line.partition(":")
        name, text = name.strip(), text.strip()
        path = PROMPTS / f"{name}.g722"
        if line.startswith(";") or not colon or not text or _UNSAID.search(text) or not path.exists():
            continue
        found.append(Utterance(f"asterisk/{name}", "asterisk", path, text))
    return tuple(found)


def utterances() -> tuple[Utterance, ...]:
    return librivox() + prompts()


def _decoded(path: Path) -> bytes:
    """A G.722 file as s16le mono 16 kHz, decoded by ffmpeg once and cached by path, size and mtime."""
    stat = path.stat()
    key = hashlib.sha256(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:20]
    cached = CACHE / f"{path.stem}-{key}.s16"
    if cached.exists():
        return cached.read_bytes()
    pcm = subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-loglevel",
            "error",
            "-i",
            str(path),
            "-f",
            "s16le",
            "-ac",
            "1",
            "-ar",
            "16000",
            "-",
        ],
        check=True,
        capture_output=True,
    ).stdout
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(f".{os.getpid()}.part")  # concurrent processes: rename is atomic
    partial.write_bytes(pcm)
    partial.replace(cached)
    return pcm


def meeting(seconds: float = 180.0, seed: int = 0) -> Meeting:
    """At most ``seconds`` (and close to it) of speech: every LibriVox sentence, spread evenly among
    Asterisk prompts of at least `MEETING_WORDS` words (a seeded draw, in the order drawn, each that
    still fits), with a seeded pause of 0.3-0.8 s of silence between two utterances. The same
    arguments give the same bytes."""
    rng = random.Random(seed)
    read = list(librivox())
    pool = [u for u in prompts() if len(u.text.split()) >= MEETING_WORDS]
    rng.shuffle(pool)
    pause = sum(PAUSE_S) / 2
    total = sum(u.seconds + pause for u in read)
    said: list[Utterance] = []
    for u in pool:
        if total + u.seconds + pause > seconds:
            continue  # one that does not fit; a shorter one may
        said.append(u)
        total += u.seconds + pause
    order = list(said)
    for i, u in enumerate(read):  # the i-th after (i + 1) / (len(read) + 1) of the prompts
        order.insert(round((i + 1) * len(said) / (len(read) + 1)) + i, u)
    return _assemble(order, rng)


def ci_fixture() -> Meeting:
    """A short meeting (~35 s) for a CI integration test: the five LibriVox sentences (~25 s) among
    a few prompts."""
    return meeting(CI_SECONDS, seed=1)


def _assemble(order: Sequence[Utterance], rng: random.Random) -> Meeting:
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        audio = list(pool.map(Utterance.pcm, order))
    rate, width = FORMAT.sample_rate, FORMAT.block_align
    pieces: list[bytes] = []
    parts: list[Placed] = []
    at = 0  # frames
    for i, (u, pcm) in enumerate(zip(order, audio, strict=True)):
        if i:
            gap = round(rng.uniform(*PAUSE_S) * rate)
            pieces.append(bytes(gap * width))
            at += gap
        frames = len(pcm) // width
        pieces.append(pcm[: frames * width])
        parts.append(Placed(u, at / rate, (at + frames) / rate))
        at += frames
    return Meeting(FORMAT, b"".join(pieces), tuple(parts))
