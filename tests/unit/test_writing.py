"""The offline writer: deterministic, in the order's language, one escaped link."""

from __future__ import annotations

import string
from collections import Counter
from html.parser import HTMLParser
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import InvalidInput
from pipeline.manifest import OrderDocument
from pipeline.stages.preflight import run_preflight
from pipeline.stages.qc import run_qc
from pipeline.stages.vocabulary import VOCABULARIES
from pipeline.stages.writing import run_writing

LANGUAGES = ("en", "sv", "de")
TARGET = "https://www.acme-shoes.com/running?size=42&colour=red"
TOPICS = {"en": "trail running", "sv": "terränglöpning", "de": "Trailrunning"}

# Printable text without the control characters the manifest refuses, plus the
# characters that must be escaped and some non-ASCII letters.
_TEXT = st.text(
    alphabet=string.printable.replace("\x0b", "").replace("\x0c", "") + "åäöüß€\"'<>&",
    min_size=1,
    max_size=100,
).filter(lambda text: text.strip() != "")
_ORDER_IDS = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,20}", fullmatch=True)


def make_order(**overrides: Any) -> OrderDocument:
    fields: dict[str, Any] = {
        "order_id": "order-1",
        "customer_id": "customer-1",
        "target_url": TARGET,
        "anchor_text": "running shoes for beginners",
        "publisher_domain": "blog.example.org",
        "language": "en",
        "topic": "trail running",
    }
    fields.update(overrides)
    return OrderDocument.model_validate(fields)


def prompt_for(order: OrderDocument, **overrides: Any) -> dict[str, Any]:
    # Built by hand so anchors preflight would refuse can still reach the writer.
    prompt: dict[str, Any] = {
        "topic": order.topic,
        "language": order.language,
        "target_words": 600,
        "anchor_text": order.anchor_text,
        "target_url": str(order.target_url),
    }
    prompt.update(overrides)
    return prompt


class Structure(HTMLParser):
    """An independent reading of the writer's HTML: tags, links and text."""

    def __init__(self, fragment: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: Counter[str] = Counter()
        self.links: list[tuple[str | None, str]] = []
        self.texts: list[str] = []
        self._link_text: list[str] | None = None
        self.feed(fragment)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] += 1
        if tag == "a":
            self._link_text = []
            self.links.append((dict(attrs).get("href"), ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._link_text is not None:
            href, _ = self.links[-1]
            self.links[-1] = (href, "".join(self._link_text))
            self._link_text = None
        if tag in {"h1", "h2", "p"}:
            self.texts.append(" ")

    def handle_data(self, data: str) -> None:
        self.texts.append(data)
        if self._link_text is not None:
            self._link_text.append(data)


def test_same_order_prompt_and_seed_give_the_same_article() -> None:
    order = make_order()

    first = run_writing(order, prompt_for(order), seed=7)
    second = run_writing(order, prompt_for(order), seed=7)

    assert first == second
    assert first["writer"] == "offline"
    assert first["seed"] == 7


def test_another_seed_or_order_gives_another_article() -> None:
    order = make_order()
    other = make_order(order_id="order-2")

    base = run_writing(order, prompt_for(order), seed=0)

    assert run_writing(order, prompt_for(order), seed=1)["html"] != base["html"]
    assert run_writing(other, prompt_for(other), seed=0)["html"] != base["html"]


@pytest.mark.parametrize("language", LANGUAGES)
def test_article_is_written_from_the_languages_vocabulary(language: str) -> None:
    order = make_order(language=language, topic=TOPICS[language])
    vocabulary = VOCABULARIES[language]

    article = run_writing(order, prompt_for(order))

    capitalised = order.topic[:1].upper() + order.topic[1:]
    titles = {
        template.replace("{topic}", order.topic).replace("{Topic}", capitalised)
        for template in vocabulary.titles
    }
    assert article["title"] in titles
    assert any(f"<h2>{heading}</h2>" in article["html"] for heading in vocabulary.headings)


@pytest.mark.parametrize("language", LANGUAGES)
def test_article_has_a_title_two_to_four_headings_and_paragraphs_only(language: str) -> None:
    order = make_order(language=language, topic=TOPICS[language])

    structure = Structure(run_writing(order, prompt_for(order))["html"])

    assert structure.tags["h1"] == 1
    assert 2 <= structure.tags["h2"] <= 4
    assert structure.tags["p"] >= structure.tags["h2"] + 1
    assert set(structure.tags) == {"h1", "h2", "p", "a"}


def test_a_language_without_vocabulary_is_refused() -> None:
    order = make_order(language="fr")

    with pytest.raises(InvalidInput, match="'fr'"):
        run_writing(order, prompt_for(order))


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("target_words", [300, 450, 600, 1000, 1500])
def test_word_count_is_within_ten_percent_of_the_target(language: str, target_words: int) -> None:
    order = make_order(language=language, topic=TOPICS[language])

    article = run_writing(order, prompt_for(order, target_words=target_words))

    assert abs(article["word_count"] - target_words) <= target_words * 0.1
    visible = "".join(Structure(article["html"]).texts)
    assert article["word_count"] == len(visible.split())


def test_topic_markup_is_escaped_not_rendered() -> None:
    order = make_order(topic="<script>alert('x')</script> & {topic}")

    article = run_writing(order, prompt_for(order))

    assert "<script>" not in article["html"]
    assert set(Structure(article["html"]).tags) == {"h1", "h2", "p", "a"}


@settings(max_examples=150, deadline=None, database=None)
@given(anchor=_TEXT, language=st.sampled_from(LANGUAGES), seed=st.integers(0, 10_000))
def test_exactly_one_escaped_link_for_any_anchor(anchor: str, language: str, seed: int) -> None:
    order = make_order(anchor_text=anchor, language=language, topic=TOPICS[language])

    article = run_writing(order, prompt_for(order), seed=seed)

    structure = Structure(article["html"])
    assert structure.links == [(TARGET, order.anchor_text)]
    assert set(structure.tags) == {"h1", "h2", "p", "a"}


@settings(max_examples=150, deadline=None, database=None)
@given(
    order_id=_ORDER_IDS,
    anchor=_TEXT,
    topic=_TEXT.map(lambda text: text[:60]).filter(lambda text: text.strip() != ""),
    language=st.sampled_from(LANGUAGES),
    seed=st.integers(0, 10_000),
)
def test_qc_accepts_every_article_the_writer_produces(
    order_id: str, anchor: str, topic: str, language: str, seed: int
) -> None:
    order = make_order(order_id=order_id, anchor_text=anchor, topic=topic, language=language)

    article = run_writing(order, prompt_for(order), seed=seed)
    report = run_qc(order, article)

    assert report["passed"]
    assert report["word_count"] == article["word_count"]
    assert abs(article["word_count"] - 600) <= 60


@pytest.mark.parametrize("language", LANGUAGES)
def test_writer_follows_the_prompt_preflight_builds(language: str) -> None:
    order = make_order(language=language, topic=TOPICS[language])
    prompt = run_preflight(order)["prompt"]

    article = run_writing(order, prompt)

    assert run_qc(order, article)["passed"]
