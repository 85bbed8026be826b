"""Word error rate with the normalisation used for every figure we record.

jiwer is a dev dependency only (tests and benchmarks score transcripts; the workers never do), so it
is imported inside the function and this module costs nothing to import in a worker image.
"""

from __future__ import annotations


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
