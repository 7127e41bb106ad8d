"""The offline writer: a deterministic article from the preflight prompt.

The same order, prompt and seed always give the same article, so a retried or
redelivered writing task stores the same output. The article is an HTML fragment
(``h1``, ``h2``, ``p``) with exactly one backlink; every piece of text is escaped.
"""

from __future__ import annotations

import html
import itertools
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pipeline.errors import InvalidInput
from pipeline.manifest import OrderDocument
from pipeline.stages.preflight import DEFAULT_TARGET_WORDS
from pipeline.stages.vocabulary import SUPPORTED_LANGUAGES, VOCABULARIES, Vocabulary

__all__ = ["SUPPORTED_LANGUAGES", "run_writing"]

_SLOT = re.compile(r"\{(topic|Topic)\}")
_MIN_HEADINGS, _MAX_HEADINGS = 2, 4
_SENTENCES_PER_PARAGRAPH = 4
#: How far, as a share of the target, the filler may stray from its goal: half
#: the ±10% the writer promises, so rounding and the fixed parts fit in the rest.
_SLACK = 0.05


@dataclass(frozen=True)
class _Brief:
    topic: str
    language: str
    target_words: int
    anchor_text: str
    target_url: str


@dataclass(frozen=True)
class _LinkSentence:
    """A sentence with the backlink between ``before`` and ``after``."""

    before: str
    anchor_text: str
    target_url: str
    after: str

    def text(self) -> str:
        return f"{self.before}{self.anchor_text}{self.after}"

    def html(self) -> str:
        link = (
            f'<a href="{html.escape(self.target_url, quote=True)}">'
            f"{html.escape(self.anchor_text)}</a>"
        )
        return f"{html.escape(self.before)}{link}{html.escape(self.after)}"


_Sentence = str | _LinkSentence
_Paragraph = list[_Sentence]


def _brief(order: OrderDocument, prompt: dict[str, Any]) -> _Brief:
    # The prompt is preflight's stored output; the order fills anything it lacks.
    return _Brief(
        topic=str(prompt.get("topic", order.topic)),
        language=str(prompt.get("language", order.language)),
        target_words=int(prompt.get("target_words", DEFAULT_TARGET_WORDS)),
        anchor_text=str(prompt.get("anchor_text", order.anchor_text)),
        target_url=str(prompt.get("target_url", order.target_url)),
    )


def _vocabulary(language: str) -> Vocabulary:
    try:
        return VOCABULARIES[language]
    except KeyError:
        supported = ", ".join(SUPPORTED_LANGUAGES)
        raise InvalidInput(
            f"the offline writer cannot write {language!r} (supported: {supported})",
            details={"language": language},
            code="writer_language",
        ) from None


def _fill(template: str, topic: str) -> str:
    # One pass, so a topic that itself contains "{topic}" is not expanded again.
    capitalised = topic[:1].upper() + topic[1:]
    return _SLOT.sub(lambda match: capitalised if match[1] == "Topic" else topic, template)


# Drafting counts the words of the same phrase-book sentences over and over (every
# pass of every article): count each distinct sentence once per process.
@lru_cache(maxsize=4096)
def _words(text: str) -> int:
    return len(text.split())


@lru_cache(maxsize=256)
def _pool(language: str, topic: str) -> tuple[str, ...]:
    """The language's sentences about ``topic``: the same for every draft of an order."""
    return tuple(_fill(sentence, topic) for sentence in VOCABULARIES[language].sentences)


def _sentence_text(sentence: _Sentence) -> str:
    return sentence.text() if isinstance(sentence, _LinkSentence) else sentence


def _sentence_html(sentence: _Sentence) -> str:
    return sentence.html() if isinstance(sentence, _LinkSentence) else html.escape(sentence)


def _link_sentence(rng: random.Random, vocabulary: Vocabulary, brief: _Brief) -> _LinkSentence:
    before, after = rng.choice(vocabulary.link_sentences).split("{link}", 1)
    return _LinkSentence(
        before=_fill(before, brief.topic),
        anchor_text=brief.anchor_text,
        target_url=brief.target_url,
        after=_fill(after, brief.topic),
    )


def _headings(rng: random.Random, vocabulary: Vocabulary, topic: str) -> list[str]:
    count = rng.randint(_MIN_HEADINGS, _MAX_HEADINGS)
    return [_fill(heading, topic) for heading in rng.sample(vocabulary.headings, count)]


def _shuffled_cycle(rng: random.Random, pool: Sequence[str]) -> Iterator[str]:
    """Yield the pool in shuffled rounds, so a sentence repeats only after all others."""
    last: str | None = None
    while True:
        order = list(pool)
        rng.shuffle(order)
        if len(order) > 1 and order[0] == last:
            # Never the same sentence twice in a row across a round boundary.
            order[0], order[-1] = order[-1], order[0]
        yield from order
        last = order[-1]


def _fillers(
    rng: random.Random, pool: Sequence[str], goal: int, *, minimum: int, slack: int
) -> list[str]:
    """Pick sentences holding about ``goal`` words, and at least ``minimum`` sentences.

    Nothing repeats within one shuffled round; a second round starts only if the
    first fell more than ``slack`` words short. A sentence that would overshoot the
    goal by more than ``slack`` is skipped, which keeps long topics in bounds.
    """
    chosen: list[str] = []
    total = 0
    stream = itertools.islice(_shuffled_cycle(rng, pool), len(pool) * 20)
    for position, sentence in enumerate(stream):
        enough = total >= goal or (position >= len(pool) and total >= goal - slack)
        if enough and len(chosen) >= minimum:
            break
        count = _words(sentence)
        if total + count <= goal + slack or len(chosen) < minimum:
            chosen.append(sentence)
            total += count
    return chosen


def _split_paragraphs(rng: random.Random, sentences: list[str], count: int) -> list[_Paragraph]:
    """Split ``sentences`` into ``count`` paragraphs of nearly equal, shuffled sizes."""
    base, extra = divmod(len(sentences), count)
    sizes = [base + 1] * extra + [base] * (count - extra)
    rng.shuffle(sizes)
    paragraphs: list[_Paragraph] = []
    start = 0
    for size in sizes:
        paragraphs.append(list(sentences[start : start + size]))
        start += size
    return paragraphs


def _insert_link(rng: random.Random, paragraphs: list[_Paragraph], link: _LinkSentence) -> None:
    # Early in the article, but never its very first sentence.
    index = rng.randrange(max(1, len(paragraphs) // 2))
    paragraph = paragraphs[index]
    paragraph.insert(rng.randint(1, max(1, len(paragraph))), link)


def _sections(paragraphs: list[_Paragraph], headings: list[str]) -> list[list[_Paragraph]]:
    """Give the first paragraph to the introduction and share the rest among the headings."""
    body = paragraphs[1:]
    base, extra = divmod(len(body), len(headings))
    sections: list[list[_Paragraph]] = [[paragraphs[0]]]
    start = 0
    for position in range(len(headings)):
        size = base + (1 if position < extra else 0)
        sections.append(body[start : start + size])
        start += size
    return sections


def _render(title: str, headings: list[str], sections: list[list[_Paragraph]]) -> str:
    parts = [f"<h1>{html.escape(title)}</h1>"]
    for position, paragraphs in enumerate(sections):
        if position:
            parts.append(f"<h2>{html.escape(headings[position - 1])}</h2>")
        parts.extend(
            "<p>" + " ".join(_sentence_html(sentence) for sentence in paragraph) + "</p>"
            for paragraph in paragraphs
        )
    return "\n".join(parts)


def _count(title: str, headings: list[str], paragraphs: list[_Paragraph]) -> int:
    sentences = (sentence for paragraph in paragraphs for sentence in paragraph)
    body = sum(_words(_sentence_text(sentence)) for sentence in sentences)
    return _words(title) + sum(_words(heading) for heading in headings) + body


def run_writing(order: OrderDocument, prompt: dict[str, Any], *, seed: int = 0) -> dict[str, Any]:
    """Write an article for ``order`` from preflight's ``prompt``, offline and deterministically.

    Args:
        order: The order; its id seeds the choices together with ``seed``.
        prompt: Preflight's prompt (topic, language, target_words, anchor_text, target_url).
        seed: Another seed gives another article for the same order (e.g. a rewrite).

    Raises:
        InvalidInput: the language has no vocabulary.

    Returns:
        ``{"title", "html", "word_count", "writer": "offline", "seed"}``; ``html`` is a
        fragment of ``h1``, ``h2`` and ``p`` elements with exactly one link.
    """
    brief = _brief(order, prompt)
    vocabulary = _vocabulary(brief.language)
    rng = random.Random(f"{order.order_id}:{seed}")
    title = _fill(rng.choice(vocabulary.titles), brief.topic)
    headings = _headings(rng, vocabulary, brief.topic)
    link = _link_sentence(rng, vocabulary, brief)
    fixed = _words(title) + sum(_words(heading) for heading in headings) + _words(link.text())
    pool = _pool(brief.language, brief.topic)
    # Every heading needs at least one paragraph, and the introduction one more.
    slack = max(1, int(brief.target_words * _SLACK))
    goal = brief.target_words - fixed
    fillers = _fillers(rng, pool, goal, minimum=len(headings) + 1, slack=slack)
    paragraph_count = max(len(headings) + 1, round(len(fillers) / _SENTENCES_PER_PARAGRAPH))
    paragraphs = _split_paragraphs(rng, fillers, paragraph_count)
    _insert_link(rng, paragraphs, link)
    return {
        "title": title,
        "html": _render(title, headings, _sections(paragraphs, headings)),
        "word_count": _count(title, headings, paragraphs),
        "writer": "offline",
        "seed": seed,
    }
