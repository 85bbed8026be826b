"""Word error rate with the normalisations used for the figures we record: `word_error_rate` for the
synthetic speech fixture, `real_speech_wer` for real human speech (see `normalise_speech`).

jiwer is a dev dependency only (tests and benchmarks score transcripts; the workers never do), so it
is imported inside the function and this module costs nothing to import in a worker image.
"""

from __future__ import annotations

import re
from collections.abc import Sequence


def word_error_rate(reference: str, hypothesis: str) -> float:
    """WER after lowercasing, removing punctuation, collapsing whitespace and stripping (jiwer 4).

    Newlines and tabs become spaces first: jiwer splits words on " " only, so a reference written one
    sentence per line would otherwise fuse each line's last word with the next line's first.
    """
    import jiwer

    transform = jiwer.Compose(
        [
            jiwer.ToLowerCase(),
            jiwer.RemovePunctuation(),  # type: ignore[no-untyped-call]
            jiwer.RemoveWhiteSpace(replace_by_space=True),
            jiwer.RemoveMultipleSpaces(),
            jiwer.Strip(),
            jiwer.ReduceToListOfListOfWords(),
        ]
    )
    return float(
        jiwer.wer(reference, hypothesis, reference_transform=transform, hypothesis_transform=transform)
    )


# --- real speech: a normaliser for both sides ---------------------------------------------------

_ONES = (
    *("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven"),
    *("twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"),
)
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_SCALES = ((10**9, "billion"), (10**6, "million"), (1000, "thousand"), (100, "hundred"))
_ORDINAL = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth"}
_ORDINAL |= {"nine": "ninth", "twelve": "twelfth"}
#: Hesitations that a transcript may or may not write down; neither side is scored on them.
FILLERS = frozenset({"uh", "uhm", "um", "umm", "er", "erm", "ah", "hm", "hmm", "mm", "mhm"})
#: Abbreviations Whisper prints where references spell the word out.
SPOKEN = {"mr": "mister", "mrs": "missus", "dr": "doctor", "ok": "okay", "vs": "versus"}
_NUMBER = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?(?:st|nd|rd|th)?")
_JOINED = re.compile(r"[.'\u2019]")  # dropped inside a word: "a.m." -> "am", "don't" -> "dont"
_SPACE = re.compile(r"[\W_]+")  # any other punctuation, hyphens and dashes included, is a word break


def number_words(n: int) -> str:
    """``n`` >= 0 in American English words, without "and" or hyphens: 1234 -> "one thousand two
    hundred thirty four"."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    for size, name in _SCALES:
        if n >= size:
            rest = n % size
            return f"{number_words(n // size)} {name}" + ("" if rest == 0 else " " + number_words(rest))
    raise AssertionError("unreachable")


def _ordinal(words: str) -> str:
    *head, last = words.split()
    if last in _ORDINAL:
        last = _ORDINAL[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return " ".join([*head, last])


def _spell(match: re.Match[str]) -> str:
    token = match.group().replace(",", "")
    suffix = token[-2:] if token[-2:].isalpha() else ""
    whole, _, fraction = token.removesuffix(suffix).partition(".")
    words = number_words(int(whole))
    if suffix:
        words = _ordinal(words)
    if fraction:
        words += " point " + " ".join(_ONES[int(d)] for d in fraction)
    return f" {words} "


def normalise_speech(text: str) -> list[str]:
    """The words of ``text`` as a real-speech transcript is scored: lowercased; numbers spelled out
    (``21`` -> "twenty one", ``1,000``, ``2.5`` -> "two point five", ``3rd`` -> "third"), ``%`` as
    "percent"; apostrophes and periods inside words dropped, any other punctuation (hyphens too) a
    word break; a few written forms spoken out (``Mr.`` -> "mister", ``OK`` -> "okay"); hesitations
    ("uh", "um", ...) left out."""
    text = _NUMBER.sub(_spell, text.lower().replace("%", " percent "))
    words = _SPACE.sub(" ", _JOINED.sub("", text)).split()
    return [SPOKEN.get(w, w) for w in words if w not in FILLERS]


def real_speech_wer(reference: str | Sequence[str], hypothesis: str | Sequence[str]) -> float:
    """WER of real speech against its reference, both normalised by `normalise_speech`. Given lists
    (one string per utterance), the errors of all of them over all their reference words."""
    import jiwer

    refs = [reference] if isinstance(reference, str) else list(reference)
    hyps = [hypothesis] if isinstance(hypothesis, str) else list(hypothesis)
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    words = [
        (" ".join(normalise_speech(r)), " ".join(normalise_speech(h)))
        for r, h in zip(refs, hyps, strict=True)
    ]
    if any(not r for r, _ in words):
        raise ValueError("a reference has no words once normalised")
    return float(jiwer.wer([r for r, _ in words], [h for _, h in words]))
