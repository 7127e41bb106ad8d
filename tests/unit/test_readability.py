"""LIX: words per sentence plus the percentage of long words, counted by hand below."""

from __future__ import annotations

import pytest

from pipeline.readability import TextCounts, count_text, lix, lix_band


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # 9 words, 2 sentences, no word over 6 letters: 9/2.
        ("The cat sat on the mat. It was happy.", 4.5),
        # 6 words, 2 sentences, all 6 long: 6/2 + 100.
        ("Interesting discussions happened yesterday. Everyone participated.", 103.0),
        # 8 words, 2 sentences, 3 long (Readability, matters, because): 4 + 37.5.
        ("Readability matters because people skim. Short words help.", 41.5),
        # 7 words, 2 sentences, 3 long (Läsbarheten, hjälper, läsaren): 3.5 + 300/7.
        ("Läsbarheten är viktig. Korta ord hjälper läsaren.", 3.5 + 300 / 7),
        # 5 words, 1 sentence (no full stop), 2 long (Wichtig, Ergebnis): 5 + 40.
        ("Wichtig ist nur das Ergebnis", 45.0),
    ],
)
def test_lix_matches_hand_computed_values(text: str, expected: float) -> None:
    assert lix(text) == pytest.approx(expected)


def test_a_line_break_ends_a_sentence_so_headings_stand_alone() -> None:
    # "Why it matters" and "It does." are two sentences of 5 words; "matters" is long.
    assert count_text("Why it matters\nIt does.") == TextCounts(words=5, sentences=2, long_words=1)
    assert lix("Why it matters\nIt does.") == pytest.approx(5 / 2 + 100 / 5)


def test_question_marks_exclamations_and_colons_end_sentences() -> None:
    # Why? | Because! | Note: | fine  -> 4 words, 4 sentences, "Because" is long.
    assert lix("Why? Because! Note: fine") == pytest.approx(1 + 25)


def test_closing_quotes_after_a_full_stop_still_end_the_sentence() -> None:
    counts = count_text('He said "stop." Then left.')

    assert counts.sentences == 2
    assert counts.words == 5


def test_punctuation_alone_is_no_word_and_digits_are_not_long() -> None:
    assert count_text("Hello - world .") == TextCounts(words=2, sentences=1, long_words=0)
    assert count_text("In 20240101 we grew.") == TextCounts(words=4, sentences=1, long_words=0)


def test_hyphens_and_apostrophes_do_not_count_as_letters() -> None:
    # well-known: 9 letters (long); don't: 4 letters.
    assert count_text("well-known don't").long_words == 1


def test_text_without_words_scores_zero() -> None:
    assert lix("") == 0.0
    assert lix("... !!\n\n") == 0.0


@pytest.mark.parametrize(
    ("score", "band"),
    [
        (0.0, "very easy"),
        (24.9, "very easy"),
        (25.0, "easy"),
        (34.9, "easy"),
        (35.0, "medium"),
        (44.9, "medium"),
        (45.0, "hard"),
        (54.9, "hard"),
        (55.0, "very hard"),
        (103.0, "very hard"),
    ],
)
def test_lix_bands(score: float, band: str) -> None:
    assert lix_band(score) == band
