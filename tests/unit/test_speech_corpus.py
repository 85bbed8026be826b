"""The real-speech corpora load from Debian's packages (`make speech-corpora`), a meeting is made of them
the same way every time, and real-speech WER normalises both sides by its stated rules."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from audioflow.workers.stt.wer import normalise_speech, number_words, real_speech_wer, word_error_rate
from tests import speech_corpus as corpus


def test_librivox_has_its_five_read_sentences_with_their_text() -> None:
    read = corpus.librivox()
    assert len(read) == 5
    assert all(u.source == "librivox" and u.text and "<s>" not in u.text for u in read)
    assert sum(u.seconds for u in read) == pytest.approx(24.73, abs=0.01)
    first = read[0]
    assert first.text.startswith("and mister john dashwood had then leisure")
    assert len(first.pcm()) == round(first.seconds * 16000) * 2


def test_asterisk_prompts_have_audio_and_plain_text_only() -> None:
    said = corpus.prompts()
    assert 450 <= len(said) <= 568  # 568 prompts, less those whose text is not what is said
    assert 18 * 60 < sum(u.seconds for u in said) < 26 * 60
    names = {u.name for u in said}
    assert {"asterisk/digits/1", "asterisk/agent-pass", "asterisk/letters/a"} <= names
    assert not names & {"asterisk/beep", "asterisk/silence/1", "asterisk/dictate/both_help"}
    assert all(u.text and not set(u.text) & set("[]()*#@$/") for u in said)
    assert all(u.path.exists() for u in said)


def test_a_prompt_decodes_to_16_khz_mono_pcm_of_its_length_and_is_cached() -> None:
    prompt = next(u for u in corpus.prompts() if u.name == "asterisk/agent-pass")
    pcm = prompt.pcm()
    assert len(pcm) == round(prompt.seconds * 16000) * 2  # 3.285 s
    cached = list(corpus.CACHE.glob("agent-pass-*.s16"))
    assert len(cached) == 1 and cached[0].read_bytes() == pcm


def test_the_meeting_is_about_three_minutes_of_both_sources_the_same_every_time() -> None:
    meeting = corpus.meeting()
    assert 170 <= meeting.seconds <= 180
    assert hashlib.sha256(meeting.pcm).digest() == hashlib.sha256(corpus.meeting().pcm).digest()
    assert meeting.fmt == corpus.FORMAT
    sources = [p.utterance.source for p in meeting.parts]
    assert sources.count("librivox") == 5 and sources[0] == "asterisk"
    gaps = [b.start_s - a.end_s for a, b in zip(meeting.parts, meeting.parts[1:], strict=False)]
    assert all(0.3 - 1e-4 <= g <= 0.8 + 1e-4 for g in gaps)
    assert meeting.parts[-1].end_s == pytest.approx(meeting.seconds)
    assert meeting.reference.split("\n") == [p.utterance.text for p in meeting.parts]
    assert corpus.meeting(seed=1).pcm != meeting.pcm


def test_the_ci_fixture_is_short_and_mostly_librivox() -> None:
    fixture = corpus.ci_fixture()
    assert 30 <= fixture.seconds <= 45
    read = sum(p.end_s - p.start_s for p in fixture.parts if p.utterance.source == "librivox")
    assert read > fixture.seconds / 2
    assert len(normalise_speech(fixture.reference)) >= 60


def test_missing_packages_name_the_make_target(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(corpus, "LIBRIVOX", tmp_path / "nothing")
    with pytest.raises(corpus.CorporaMissing, match=r"pocketsphinx-testdata: run `make speech-corpora`"):
        corpus.require()


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("Press 1, please.", "press one please"),
        ("Call-Forward on No Answer", "call forward on no answer"),
        ("um, so uh, the 21st of May", "so the twenty first of may"),
        (
            "1,234 people, 28.8% of them",
            "one thousand two hundred thirty four people twenty eight point eight percent of them",
        ),
        ("Mr. Dashwood, it's OK", "mister dashwood its okay"),
        ("at 9:30 A.M. — 2nd and 3rd", "at nine thirty am second and third"),
        ("the 40th and 12th", "the fortieth and twelfth"),
    ],
)
def test_the_normaliser_spells_out_numbers_and_drops_punctuation_and_fillers(text: str, words: str) -> None:
    assert " ".join(normalise_speech(text)) == words


def test_number_words() -> None:
    assert number_words(0) == "zero"
    assert number_words(90) == "ninety"
    assert number_words(1_000_005) == "one million five"
    assert number_words(2_300_000_000) == "two billion three hundred million"


def test_real_speech_wer_scores_normalised_words_and_aggregates_utterances() -> None:
    assert real_speech_wer("Press 1 to delete this message.", "press one to delete this message") == 0.0
    assert real_speech_wer(["a b c d", "e f"], ["a b c d", "e"]) == pytest.approx(1 / 6)
    with pytest.raises(ValueError, match="no words"):
        real_speech_wer("um", "anything")
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        real_speech_wer(["a", "b"], ["a"])


def test_the_fixture_wer_is_unchanged_for_its_callers() -> None:
    assert word_error_rate("press 1", "press one") == 0.5  # no number spelling there
    assert word_error_rate("Hello, world.", "hello world") == 0.0


def test_the_head_of_a_meeting_is_its_first_utterances() -> None:
    meeting = corpus.meeting()
    head = meeting.head(2)
    assert head.parts == meeting.parts[:2]
    assert head.seconds == pytest.approx(meeting.parts[1].end_s)
    assert meeting.pcm.startswith(head.pcm)
