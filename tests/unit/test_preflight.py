"""Preflight: each check alone, the anchor classes, and the whole stage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pipeline.errors import InvalidInput, PolicyViolation
from pipeline.manifest import OrderDocument
from pipeline.stages.preflight import (
    brand_label,
    check_anchor_text,
    check_anchor_url,
    check_deadline,
    check_language,
    check_target_domain,
    check_target_url,
    classify_anchor,
    looks_like_url,
    run_preflight,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def make_order(**overrides: Any) -> OrderDocument:
    fields: dict[str, Any] = {
        "order_id": "order-1",
        "customer_id": "customer-1",
        "target_url": "https://www.acme-shoes.com/running",
        "anchor_text": "running shoes for beginners",
        "publisher_domain": "blog.example.org",
        "language": "en",
        "topic": "running",
    }
    fields.update(overrides)
    return OrderDocument.model_validate(fields)


# --- target URL -----------------------------------------------------------------


@pytest.mark.parametrize("url", ["https://acme.com/", "http://shop.acme.com/a?b=c"])
def test_http_and_https_urls_with_a_host_pass(url: str) -> None:
    assert check_target_url(url).passed


@pytest.mark.parametrize("url", ["ftp://acme.com/file", "mailto:me@acme.com", "https://", "acme"])
def test_other_schemes_and_hostless_urls_fail(url: str) -> None:
    result = check_target_url(url)
    assert not result.passed
    assert "target URL" in result.detail


def test_target_on_another_domain_passes() -> None:
    assert check_target_domain("https://acme.com/x", "blog.example.org").passed


@pytest.mark.parametrize(
    ("url", "publisher"),
    [
        ("https://blog.example.org/post", "blog.example.org"),
        ("https://www.example.org/", "example.org"),
        ("https://shop.example.org/", "example.org"),
        ("https://example.org/", "blog.example.org"),
    ],
)
def test_target_on_the_publishers_own_domain_fails(url: str, publisher: str) -> None:
    result = check_target_domain(url, publisher)
    assert not result.passed
    assert "publisher's own domain" in result.detail


def test_a_lookalike_domain_is_not_the_publishers_own() -> None:
    assert check_target_domain("https://notexample.org/", "example.org").passed


# --- anchor text ----------------------------------------------------------------


@pytest.mark.parametrize("anchor", ["ok", "x" * 100, 'Tom & Jerry\'s "guide"'])
def test_anchor_text_of_allowed_length_without_brackets_passes(anchor: str) -> None:
    assert check_anchor_text(anchor).passed


@pytest.mark.parametrize("anchor", ["x", "x" * 101])
def test_anchor_text_too_short_or_too_long_fails(anchor: str) -> None:
    result = check_anchor_text(anchor)
    assert not result.passed
    assert f"{len(anchor)} characters" in result.detail


@pytest.mark.parametrize("anchor", ["<b>shoes</b>", "shoes >", "a < b"])
def test_anchor_text_with_angle_brackets_fails(anchor: str) -> None:
    result = check_anchor_text(anchor)
    assert not result.passed
    assert "'<' or '>'" in result.detail


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://acme.com", True),
        ("www.acme.com", True),
        ("acme.com", True),
        ("acme.co.uk/shoes", True),
        ("Node.js", False),
        ("running shoes", False),
        ("version 2.0", False),
    ],
)
def test_looks_like_url(text: str, expected: bool) -> None:
    assert looks_like_url(text) is expected


@pytest.mark.parametrize(
    "anchor", ["running shoes", "www.acme.com", "https://acme.com/x", "acme.com"]
)
def test_anchor_that_is_no_url_or_names_the_target_host_passes(anchor: str) -> None:
    assert check_anchor_url(anchor, "https://www.acme.com/shoes").passed


@pytest.mark.parametrize("anchor", ["https://other.com", "www.other.com", "other.com/shoes"])
def test_url_anchor_naming_another_host_fails(anchor: str) -> None:
    result = check_anchor_url(anchor, "https://www.acme.com/shoes")
    assert not result.passed
    assert "other.com" in result.detail


# --- language and deadline --------------------------------------------------------


@pytest.mark.parametrize("language", ["en", "sv", "de"])
def test_languages_the_writer_knows_pass(language: str) -> None:
    assert check_language(language).passed


def test_unknown_language_fails_and_names_it() -> None:
    result = check_language("fr")
    assert not result.passed
    assert "'fr'" in result.detail


@pytest.mark.parametrize(
    ("deadline", "words"),
    [(None, "no deadline"), (NOW + timedelta(days=1), "due"), (NOW - timedelta(days=1), "past")],
)
def test_deadline_never_fails_but_a_past_one_is_recorded(
    deadline: datetime | None, words: str
) -> None:
    result = check_deadline(deadline, NOW)
    assert result.passed
    assert words in result.detail


# --- anchor classes ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "label"),
    [
        ("https://www.acme.com/", "acme"),
        ("https://acme.co.uk/", "acme"),
        ("https://shop.acme.se/x", "acme"),
        ("http://localhost/", "localhost"),
    ],
)
def test_brand_label_is_the_second_level_label(url: str, label: str) -> None:
    assert brand_label(url) == label


@pytest.mark.parametrize(
    ("anchor", "expected"),
    [
        ("https://www.acme-shoes.com", "naked_url"),
        ("acme-shoes.com", "naked_url"),
        ("Click here", "generic"),
        ("read more.", "generic"),
        ("Läs mer", "generic"),
        ("Acme Shoes", "branded"),
        ("the acme-shoes range", "branded"),
        ("Trail Running", "exact"),
        ("trail  running", "exact"),
        ("trail running tips", "partial"),
        ("comfortable footwear", "partial"),
    ],
)
def test_classify_anchor(anchor: str, expected: str) -> None:
    assert classify_anchor(anchor, "https://www.acme-shoes.com/trail", "trail running") == expected


def test_a_short_brand_label_does_not_make_every_anchor_branded() -> None:
    assert classify_anchor("about jobs", "https://ab.com/", "careers") == "partial"


# --- the whole stage -----------------------------------------------------------------


def test_preflight_of_a_good_order_returns_checks_class_and_prompt() -> None:
    order = make_order()

    result = run_preflight(order, now=NOW)

    assert set(result) == {"checks", "anchor_class", "prompt"}
    assert all(check["passed"] for check in result["checks"].values())
    assert set(result["checks"]) == {
        "target_url",
        "target_domain",
        "anchor_text",
        "anchor_url",
        "language",
        "deadline",
    }
    assert result["anchor_class"] == "partial"
    prompt = result["prompt"]
    assert prompt["target_url"] == str(order.target_url)
    assert prompt["target_words"] == 600
    assert prompt["tone"] == "informative"
    assert (prompt["topic"], prompt["language"]) == ("running", "en")
    assert prompt["anchor_text"] == order.anchor_text
    assert prompt["publisher_domain"] == "blog.example.org"
    assert prompt["guidelines"] and all(isinstance(line, str) for line in prompt["guidelines"])


def test_preflight_rejects_a_link_to_the_publishers_own_site() -> None:
    order = make_order(target_url="https://blog.example.org/about")

    with pytest.raises(InvalidInput, match=r"^target_domain: ") as raised:
        run_preflight(order, now=NOW)

    assert raised.value.details["checks"]["target_domain"]["passed"] is False


def test_preflight_rejects_an_anchor_with_markup() -> None:
    with pytest.raises(InvalidInput, match=r"^anchor_text: "):
        run_preflight(make_order(anchor_text="<b>shoes</b>"), now=NOW)


def test_preflight_rejects_a_url_anchor_for_another_site_as_a_policy_violation() -> None:
    with pytest.raises(PolicyViolation, match=r"^anchor_url: "):
        run_preflight(make_order(anchor_text="www.other-shop.com"), now=NOW)


def test_preflight_rejects_a_language_the_writer_lacks_naming_it() -> None:
    with pytest.raises(InvalidInput, match="'fr'"):
        run_preflight(make_order(language="fr"), now=NOW)


def test_preflight_accepts_a_deadline_in_the_past() -> None:
    order = make_order(deadline=NOW - timedelta(hours=1))

    result = run_preflight(order, now=NOW)

    assert "already past" in result["checks"]["deadline"]["detail"]
