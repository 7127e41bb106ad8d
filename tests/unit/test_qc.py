"""QC: each check passing and failing, parsed with HTMLParser as a browser would."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.errors import QualityRejected
from pipeline.manifest import OrderDocument
from pipeline.stages.qc import (
    Link,
    check_no_other_target_links,
    check_target_link,
    check_title,
    check_word_count,
    normalise_url,
    parse_article,
    run_qc,
)

TARGET = "https://www.acme.com/shoes"
ANCHOR = "running shoes"
FILLER = "<p>" + "word " * 400 + "</p>"


def make_order(**overrides: Any) -> OrderDocument:
    fields: dict[str, Any] = {
        "order_id": "order-1",
        "customer_id": "customer-1",
        "target_url": TARGET,
        "anchor_text": ANCHOR,
        "publisher_domain": "blog.example.org",
        "language": "en",
        "topic": "running",
    }
    fields.update(overrides)
    return OrderDocument.model_validate(fields)


def article(body: str, *, title: str = "<h1>A guide to running</h1>") -> dict[str, Any]:
    return {"title": "A guide to running", "html": f"{title}\n{body}\n{FILLER}"}


def link(href: str = TARGET, text: str = ANCHOR) -> str:
    return f'<p>See <a href="{href}">{text}</a>, which helps.</p>'


# --- parsing --------------------------------------------------------------------------


def test_parser_decodes_entities_and_keeps_words_of_adjacent_blocks_apart() -> None:
    parsed = parse_article(
        '<h1>Tom &amp; Jerry</h1><p>one <a href="https://a.com/?x=1&amp;y=2">two</a>, three</p>'
    )

    assert parsed.title == "Tom & Jerry"
    assert parsed.text.split() == ["Tom", "&", "Jerry", "one", "two,", "three"]
    assert [(found.href, found.text) for found in parsed.links] == [
        ("https://a.com/?x=1&y=2", "two")
    ]


def test_parser_ignores_hidden_text() -> None:
    parsed = parse_article("<p>seen</p><script>var hidden = 1;</script><style>p {}</style>")

    assert parsed.text.split() == ["seen"]


def test_normalise_url_matches_how_orders_store_urls() -> None:
    assert normalise_url("https://ACME.com") == "https://acme.com/"
    assert normalise_url("not a url") == "not a url"


# --- each check alone -----------------------------------------------------------------


def test_title_check_passes_with_text_and_fails_without() -> None:
    assert check_title("A guide").passed
    assert not check_title("").passed


@pytest.mark.parametrize(
    ("count", "passed"), [(299, False), (300, True), (2000, True), (2001, False)]
)
def test_word_count_check_bounds(count: int, passed: bool) -> None:
    assert check_word_count(count, 300, 2000).passed is passed


def test_target_link_check_needs_exactly_one_matching_link() -> None:
    good = Link(TARGET, [ANCHOR])
    other_text = Link(TARGET, ["elsewhere"])

    assert check_target_link([good], TARGET, ANCHOR).passed
    assert not check_target_link([], TARGET, ANCHOR).passed
    assert not check_target_link([other_text], TARGET, ANCHOR).passed
    assert not check_target_link([good, good], TARGET, ANCHOR).passed


def test_other_target_links_check_flags_links_with_another_text() -> None:
    good = Link(TARGET, [ANCHOR])
    elsewhere = Link("https://other.com/", ["other site"])

    assert check_no_other_target_links([good, elsewhere], TARGET, ANCHOR).passed
    assert not check_no_other_target_links([good, Link(TARGET, ["buy"])], TARGET, ANCHOR).passed


# --- the whole stage --------------------------------------------------------------------


def test_a_good_article_passes_with_a_full_report() -> None:
    report = run_qc(make_order(), article(link()))

    assert report["passed"] is True
    assert set(report["checks"]) == {"title", "word_count", "target_link", "no_other_target_links"}
    assert all(check["passed"] for check in report["checks"].values())
    assert report["word_count"] == 4 + 5 + 400


def test_escaped_anchor_text_and_url_are_compared_decoded() -> None:
    order = make_order(anchor_text='Tom & "Jerry"', target_url="https://acme.com/?a=1&b=2")
    body = link(href="https://acme.com/?a=1&amp;b=2", text="Tom &amp; &quot;Jerry&quot;")

    assert run_qc(order, article(body))["passed"]


def test_link_without_trailing_slash_counts_as_the_target() -> None:
    order = make_order(target_url="https://acme.com")

    assert run_qc(order, article(link(href="https://acme.com")))["passed"]


def test_missing_title_is_rejected() -> None:
    with pytest.raises(QualityRejected, match=r"^title: "):
        run_qc(make_order(), article(link(), title=""))


def test_too_few_words_are_rejected() -> None:
    with pytest.raises(QualityRejected, match=r"^word_count: ") as raised:
        run_qc(make_order(), article(link()), min_words=1000)

    assert raised.value.details["passed"] is False
    assert raised.value.details["checks"]["word_count"]["passed"] is False


def test_too_many_words_are_rejected() -> None:
    with pytest.raises(QualityRejected, match=r"^word_count: "):
        run_qc(make_order(), article(link()), max_words=100)


def test_missing_link_is_rejected() -> None:
    with pytest.raises(QualityRejected, match=r"^target_link: found 0"):
        run_qc(make_order(), article("<p>No link here.</p>"))


def test_link_with_the_wrong_text_is_rejected() -> None:
    with pytest.raises(QualityRejected, match=r"^target_link: ") as raised:
        run_qc(make_order(), article(link(text="cheap shoes")))

    assert raised.value.details["checks"]["no_other_target_links"]["passed"] is False


def test_two_matching_links_are_rejected() -> None:
    with pytest.raises(QualityRejected, match=r"^target_link: found 2"):
        run_qc(make_order(), article(link() + link()))


def test_an_extra_link_to_the_target_is_rejected() -> None:
    with pytest.raises(QualityRejected, match=r"^no_other_target_links: "):
        run_qc(make_order(), article(link() + link(text="buy now")))


def test_links_to_other_sites_are_not_counted_against_the_target() -> None:
    body = link() + link(href="https://other.com/", text="other")

    assert run_qc(make_order(), article(body))["passed"]
