"""LIX, a readability index that needs no language model, so it works for en, sv and de alike.

LIX (Björnsson, 1968) is the average sentence length plus the percentage of long
words: ``words / sentences + 100 * long_words / words``, where a long word has more
than six letters. Higher means harder; everyday prose scores 30-50.

Here a *word* is a whitespace-separated token holding at least one letter or
digit, its length is the number of letters in it, and a *sentence* ends at a token
ending in ``.``, ``!``, ``?`` or ``:`` (closing quotes and brackets aside) or at a
line break, so that headings count as sentences of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Final

LONG_WORD_LETTERS: Final = 6
_TERMINATORS: Final = frozenset(".!?:")
_CLOSERS: Final = "\"')]}\u00bb\u2019\u201d"
#: Upper score of each band, in Björnsson's usual reading; the last band is open.
_BANDS: Final = (
    (25.0, "very easy"),
    (35.0, "easy"),
    (45.0, "medium"),
    (55.0, "hard"),
)


@dataclass(frozen=True)
class TextCounts:
    """What LIX is computed from."""

    words: int
    sentences: int
    long_words: int


def _is_word(token: str) -> bool:
    return any(character.isalnum() for character in token)


def _is_long(token: str) -> bool:
    # Most tokens are too short to be long at all; QC counts every word of every article.
    if len(token) <= LONG_WORD_LETTERS:
        return False
    return sum(character.isalpha() for character in token) > LONG_WORD_LETTERS


def _ends_sentence(token: str) -> bool:
    return token.rstrip(_CLOSERS)[-1:] in _TERMINATORS


# Articles repeat their words, and QC counts every word of every article: each distinct
# token is classified once per process (a few MB at most), not once per occurrence.
@lru_cache(maxsize=8192)
def _token_facts(token: str) -> tuple[bool, int, bool]:
    """Whether ``token`` is a word, is a long one (0 or 1) and ends a sentence."""
    word = _is_word(token)
    return word, int(word and _is_long(token)), _ends_sentence(token)


def count_text(text: str) -> TextCounts:
    """Count the words, sentences and long words of ``text``."""
    words = sentences = long_words = 0
    for line in text.splitlines():
        open_sentence = False
        for token in line.split():
            word, long, ends = _token_facts(token)
            if word:
                words += 1
                long_words += long
                open_sentence = True
            if open_sentence and ends:
                sentences += 1
                open_sentence = False
        sentences += open_sentence
    return TextCounts(words=words, sentences=sentences, long_words=long_words)


def lix(text: str) -> float:
    """Return the LIX readability index of ``text`` (0.0 for text without words).

    Args:
        text: Plain text; line breaks end sentences.

    Returns:
        ``words / sentences + 100 * long_words / words``.
    """
    counts = count_text(text)
    if counts.words == 0:
        return 0.0
    return counts.words / counts.sentences + 100 * counts.long_words / counts.words


def lix_band(score: float) -> str:
    """Name the band ``score`` falls in: very easy, easy, medium, hard or very hard."""
    for upper, name in _BANDS:
        if score < upper:
            return name
    return "very hard"
