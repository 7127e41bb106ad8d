"""The stages' cheaper measuring code gives exactly what the code before it gave.

Session 8 made QC's facts (word count, LIX, language, MinHash signature) and checks
cheaper. Signatures are stored in the ledger and compared with new ones, and every
verdict and report field must read as before, so the current code is compared with
a verbatim copy of the code before (``tests/unit/reference``) over the sample orders'
articles in every language, rewrites included, and over generated text and HTML.
"""

from __future__ import annotations

import dataclasses
import string
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from functools import cache, lru_cache
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cli.sample_orders import load_catalog, sample_orders
from pipeline import readability, similarity
from pipeline.catalog import PublisherProfile
from pipeline.history import PreflightContext
from pipeline.manifest import OrderDocument
from pipeline.stages import qc, writing
from pipeline.stages.preflight import run_preflight
from pipeline.writers.offline import OfflineWriter
from tests.unit.reference import qc as old_qc
from tests.unit.reference import readability as old_readability
from tests.unit.reference import similarity as old_similarity
from tests.unit.reference import writing as old_writing

NOW = datetime(2026, 12, 1, tzinfo=UTC)

# Words, punctuation around and inside them, every kind of whitespace str.split()
# knows (the unit separator the shingles are joined with among them), accents
# composed and not, other scripts, digits and underscores.
_TEXT = st.lists(
    st.sampled_from(
        [
            *string.ascii_letters,
            *string.digits,
            *" \n\t\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\u2028\u2029\xa0\u3000",
            *".,;:!?\"'()[]{}«»\u2019\u201d_-—…/&#",
            *"åäöüßÅÄÖÜéèçñ",
            "e\u0301",  # e and a combining acute: NFC makes it one character
            *"ΑΒΓαβγДЖЯдэя中文字日本語한국어١٢٣",
            "ǅ",  # a titlecase letter
            "ﬁ",  # a ligature that casefolds to two letters
        ]
    ),
    max_size=400,
).map("".join)
_WORDS = st.lists(
    st.sampled_from(
        [
            "the",
            "The",
            "cat",
            "sat",
            "on",
            "mat.",
            "(the)",
            "Hello,",
            "«Hej»",
            "über",
            "Straße",
            "a",
            "running",
            "shoes",
            "Running!",
            "beginners:",
            "löparskor",
            "för",
            "nybörjare",
        ]
    ),
    max_size=60,
).map(" ".join)


@lru_cache(maxsize=1)
def _articles() -> tuple[tuple[OrderDocument, dict[str, Any], PublisherProfile | None], ...]:
    """Sample orders with their publishers, each written as a draft and two rewrites."""
    catalog = load_catalog()
    publishers = {profile.domain: profile for profile in catalog.publishers}
    customers = {profile.customer_id: profile for profile in catalog.customers}
    writer = OfflineWriter()
    written = []
    for item_id, raw in enumerate(sample_orders(45, seed=15), start=1):
        order = OrderDocument.model_validate(raw)
        publisher = publishers.get(order.publisher_domain)
        context = PreflightContext(
            item_id=item_id,
            customer=customers.get(order.customer_id),
            publisher=publisher,
            history=(),
            now=NOW,
        )
        prompt = run_preflight(order, context)["prompt"]
        for attempt in (1, 2, 3):
            written.append((order, writer.write(order, prompt, attempt=attempt), publisher))
    return tuple(written)


@pytest.mark.parametrize("target_words", [None, 120, 450, 1500])
def test_offline_drafts_are_as_before(target_words: int | None) -> None:
    # Every sample order in its prompt's language and in each other one, three seeds
    languages = ("en", "sv", "de")
    for order, _, _ in _articles()[::3]:
        prompt = run_preflight(order, now=NOW)["prompt"]
        if target_words is not None:
            prompt["target_words"] = target_words
        for language, seed in zip(languages, (0, 1, 2), strict=True):
            brief = {**prompt, "language": language}
            new = writing.run_writing(order, brief, seed=seed)
            assert new == old_writing.run_writing(order, brief, seed=seed)


def _texts() -> Iterator[str]:
    for _, article, _ in _articles():
        yield qc.parse_article(article["html"]).text


def _judged(
    module: Any,
    order: OrderDocument,
    article: dict[str, Any],
    publisher: PublisherProfile | None = None,
    earlier: Sequence[Sequence[int]] = (),
) -> Any:
    """``module.run_qc``'s report, or its rejection's class name, message, code and report."""
    try:
        return module.run_qc(order, article, publisher=publisher, earlier_signatures=earlier)
    except module.QualityRejected as error:
        return (type(error).__name__, str(error), error.code, error.details)


def _facts(facts: Any) -> dict[str, Any]:
    fields = dataclasses.asdict(facts)
    fields["links"] = [(link.href, link.text) for link in facts.links]
    return fields


def assert_text_measures_alike(text: str) -> None:
    """Every measure of plain text is what the code before gave."""
    assert similarity.minhash_signature(text) == old_similarity.minhash_signature(text)
    assert similarity.minhash_signature(text, 16) == old_similarity.minhash_signature(text, 16)
    for k in (1, 2, 5):
        assert similarity.shingles(text, k) == old_similarity.shingles(text, k)
    assert similarity.normalised_words(text) == old_similarity.normalised_words(text)
    new_counts, old_counts = readability.count_text(text), old_readability.count_text(text)
    assert dataclasses.astuple(new_counts) == dataclasses.astuple(old_counts)
    assert readability.lix(text) == old_readability.lix(text)
    assert qc.detect_language(text) == old_qc.detect_language(text)


def test_sample_articles_measure_as_before() -> None:
    texts = list(_texts())
    assert len(texts) == 135 and all(len(text.split()) > 300 for text in texts)
    for text in texts:
        assert_text_measures_alike(text)


def _judgements(
    articles: tuple[tuple[OrderDocument, dict[str, Any], PublisherProfile | None], ...],
) -> Iterator[tuple[OrderDocument, dict[str, Any], PublisherProfile | None, bool]]:
    """Each article for its own order with its publisher; every other one also without
    its publisher, for its neighbour's order (another target, often another language or
    publisher), and against its own signature among the earlier ones (a near-duplicate).

    Every other: judging is the test's cost (the code before's QC is slow), and half the
    135 articles still cover each language, draft and rewrite, and every verdict.
    """
    for index, (order, article, publisher) in enumerate(articles):
        yield order, article, publisher, False
        if index % 2:
            continue
        yield order, article, None, False
        neighbour, _, neighbours_publisher = articles[index - 7]
        yield neighbour, article, neighbours_publisher, False
        yield order, article, publisher, True


@cache
def _facts_compared(html: str) -> qc.ArticleFacts:
    """The article's facts, once compared field by field with the code before's.

    Each article is judged four times (``_judgements``); its facts are the same each
    time, so they are measured and compared once, not four times (the slowest part).
    """
    facts = qc.ArticleFacts.from_html(html)
    assert _facts(facts) == _facts(old_qc.ArticleFacts.from_html(html))
    return facts


def test_sample_articles_get_the_same_facts_and_verdicts_as_before() -> None:
    # Given the sample articles, judged as _judgements says, against the signatures
    # of the articles judged before them
    earlier: list[list[int]] = []
    verdicts: set[object] = set()
    for order, article, publisher, repeated in _judgements(_articles()):
        facts = _facts_compared(article["html"])
        signatures = [*earlier, facts.signature] if repeated else earlier
        new = _judged(qc, order, article, publisher, similarity.SignatureSet(signatures))
        old = _judged(old_qc, order, article, publisher, signatures)
        # Then the reports (or rejections) are equal in every field
        assert new == old
        report = new if isinstance(new, dict) else new[3]
        verdicts.update(name for name, check in report["checks"].items() if not check["passed"])
        verdicts.add(report["passed"])
        if repeated:
            earlier.append(facts.signature)
    # and passes and rejections of several kinds were compared
    assert {True, False, "target_link", "near_duplicate", "language"} <= verdicts


@pytest.mark.parametrize(
    "text",
    [
        "",
        " \n\t ",
        "... — !!",
        "one",
        "three short words",
        "one two three four five",
        "a b a b a b a b a b a b",  # repeated shingles
        "SHOUTING IN CAPITALS IS LOWERED BY THE LANGUAGE MODEL FIRST.",
        "Cafe\u0301 cr\u00e8me brûlée.\nNew line: new sentence",
        "x" * 500,
        "Supercalifragilistic words\u2028and\u0085odd\x1fseparators\x1cin\x1ebetween.",
        "_under_ score_ __ 123 4,5 (6) «7»",
    ],
)
def test_edge_texts_measure_as_before(text: str) -> None:
    assert_text_measures_alike(text)


@settings(max_examples=400, deadline=None, database=None)
@given(text=_TEXT)
def test_any_text_measures_as_before(text: str) -> None:
    assert_text_measures_alike(text)


@settings(max_examples=200, deadline=None, database=None)
@given(text=_WORDS, phrases=st.lists(_WORDS, max_size=3))
def test_keyword_density_is_as_before(text: str, phrases: list[str]) -> None:
    assert qc.keyword_density(text, phrases) == old_qc.keyword_density(text, phrases)


@settings(max_examples=200, deadline=None, database=None)
@given(text=_TEXT, terms=st.lists(_WORDS | _TEXT, max_size=3))
def test_forbidden_terms_are_found_as_before(text: str, terms: list[str]) -> None:
    new = qc.check_forbidden_terms(text, terms)
    assert dataclasses.asdict(new) == dataclasses.asdict(old_qc.check_forbidden_terms(text, terms))


_HTML = st.lists(
    st.sampled_from(["<h1>", "</h1>", "<p>", "</p>", "<h2>", "</h2>", "<br>", "<script>"])
    | st.sampled_from(["</script>", '<a href="https://www.acme.com/shoes">', "</a>", "&amp;"])
    | _TEXT
    | _WORDS,
    max_size=30,
).map("".join)


@settings(max_examples=200, deadline=None, database=None)
@given(fragment=_HTML)
def test_any_fragment_gets_the_same_facts_and_report(fragment: str) -> None:
    order = OrderDocument.model_validate(
        {
            "order_id": "o-1",
            "customer_id": "c-1",
            "target_url": "https://www.acme.com/shoes",
            "anchor_text": "running shoes",
            "publisher_domain": "blog.example.org",
            "language": "en",
            "topic": "running",
        }
    )
    new_facts = qc.ArticleFacts.from_html(fragment)
    assert _facts(new_facts) == _facts(old_qc.ArticleFacts.from_html(fragment))
    article = {"html": fragment}
    assert _judged(qc, order, article) == _judged(old_qc, order, article)
