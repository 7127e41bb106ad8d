"""Preflight: each check alone, the anchor classes, and the whole stage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pipeline.catalog import CustomerProfile, PublisherProfile
from pipeline.errors import (
    CustomerSuspended,
    DuplicateOrder,
    InvalidInput,
    PolicyViolation,
)
from pipeline.history import PastOrder, PreflightContext, PreflightRules
from pipeline.manifest import OrderDocument
from pipeline.stages.preflight import (
    AnchorProfile,
    anchor_profile,
    brand_label,
    build_prompt,
    check_anchor_profile,
    check_anchor_terms,
    check_anchor_text,
    check_anchor_url,
    check_customer_active,
    check_customer_known,
    check_deadline,
    check_duplicates,
    check_forbidden_topic,
    check_language,
    check_publisher_known,
    check_publisher_language,
    check_target_domain,
    check_target_url,
    classify_anchor,
    find_duplicates,
    looks_like_url,
    publisher_fit,
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


TARGET = "https://www.acme-shoes.com/running"
CUSTOMER = CustomerProfile(customer_id="customer-1", name="Acme Shoes", tier="standard")
PUBLISHER = PublisherProfile(
    domain="blog.example.org",
    languages=("en", "de"),
    topics=("running", "fitness", "outdoor sports"),
    min_words=450,
    max_words=900,
    max_outbound_links=2,
    forbidden_topics=("gambling", "payday loans"),
    forbidden_terms=("casino", "miracle cure"),
    guidelines=("Use British spelling.",),
)


def past(item_id: int, **overrides: Any) -> PastOrder:
    """An earlier order of customer-1 for TARGET on blog.example.org, a day old."""
    fields: dict[str, Any] = {
        "item_id": item_id,
        "customer_id": "customer-1",
        "target_url": TARGET,
        "publisher_domain": "other-blog.example.com",
        "anchor_text": "shoes for trail runs",
        "topic": "running",
        "created_at": NOW - timedelta(days=1),
    }
    fields.update(overrides)
    return PastOrder(**fields)


def make_context(**overrides: Any) -> PreflightContext:
    """The context of item 100: a known, active customer and a fitting publisher."""
    fields: dict[str, Any] = {
        "item_id": 100,
        "customer": CUSTOMER,
        "publisher": PUBLISHER,
        "history": (),
        "now": NOW,
    }
    fields.update(overrides)
    return PreflightContext(**fields)


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


# --- publisher and customer ---------------------------------------------------------------


def test_a_publisher_in_the_catalog_passes() -> None:
    assert check_publisher_known("blog.example.org", PUBLISHER).passed


def test_an_unknown_publisher_fails_naming_it() -> None:
    result = check_publisher_known("nowhere.example.net", None)
    assert not result.passed
    assert result.detail == "unknown publisher nowhere.example.net"


@pytest.mark.parametrize("language", ["en", "de"])
def test_a_language_the_publisher_accepts_passes(language: str) -> None:
    assert check_publisher_language(language, PUBLISHER).passed


def test_a_language_the_publisher_does_not_accept_fails_naming_both() -> None:
    result = check_publisher_language("sv", PUBLISHER)
    assert not result.passed
    assert "publisher blog.example.org does not accept language sv" in result.detail


def test_the_publisher_language_cannot_pass_without_a_publisher() -> None:
    assert not check_publisher_language("en", None).passed


def test_a_customer_in_the_catalog_passes() -> None:
    assert check_customer_known("customer-1", CUSTOMER).passed


def test_an_unknown_customer_fails_naming_it() -> None:
    result = check_customer_known("ghost", None)
    assert not result.passed
    assert "unknown customer ghost" in result.detail


def test_an_active_customer_passes() -> None:
    assert check_customer_active(CUSTOMER).passed


def test_a_suspended_customer_fails() -> None:
    suspended = CUSTOMER.model_copy(update={"suspended": True})
    result = check_customer_active(suspended)
    assert not result.passed
    assert "customer-1 is suspended" in result.detail


def test_an_unknown_customer_is_not_taken_for_an_active_one() -> None:
    assert not check_customer_active(None).passed


@pytest.mark.parametrize("topic", ["running", "casinos of old Europe", "betting on health"])
def test_a_topic_the_publisher_allows_passes(topic: str) -> None:
    assert check_forbidden_topic(topic, PUBLISHER).passed


@pytest.mark.parametrize("topic", ["gambling", "Online Gambling tips", "best payday loans 2026"])
def test_a_forbidden_topic_fails_naming_it(topic: str) -> None:
    result = check_forbidden_topic(topic, PUBLISHER)
    assert not result.passed
    assert "does not publish" in result.detail


def test_an_anchor_without_forbidden_terms_passes() -> None:
    assert check_anchor_terms("running shoes for beginners", PUBLISHER).passed


@pytest.mark.parametrize("anchor", ["Casino bonus", "the miracle-cure insoles"])
def test_an_anchor_with_a_forbidden_term_fails(anchor: str) -> None:
    result = check_anchor_terms(anchor, PUBLISHER)
    assert not result.passed
    assert "forbids" in result.detail


def test_publisher_fit_records_language_and_topic_overlap() -> None:
    fit = publisher_fit(make_order(topic="trail running"), PUBLISHER)
    assert fit == {"language_accepted": True, "topic_overlap": 0.5}
    assert publisher_fit(make_order(), None) is None


# --- duplicates ------------------------------------------------------------------------------


def _duplicate(item_id: int = 7, **overrides: Any) -> PastOrder:
    return past(item_id, publisher_domain="blog.example.org", **overrides)


def test_an_earlier_order_for_the_same_customer_target_and_publisher_is_a_duplicate() -> None:
    context = make_context(history=(_duplicate(7), _duplicate(3)))

    duplicates = find_duplicates(make_order(), context)

    assert [d.item_id for d in duplicates] == [3, 7]


@pytest.mark.parametrize(
    "other",
    [
        {"publisher_domain": "other-blog.example.com"},
        {"target_url": "https://www.acme-shoes.com/trail"},
        {"customer_id": "customer-2"},
        {"created_at": NOW - timedelta(days=31)},
    ],
    ids=["other publisher", "other target", "other customer", "outside the window"],
)
def test_an_order_differing_in_any_key_or_too_old_is_no_duplicate(other: dict[str, Any]) -> None:
    context = make_context(history=(past(7, **{"publisher_domain": "blog.example.org", **other}),))

    assert find_duplicates(make_order(), context) == ()


def test_an_order_is_no_duplicate_of_itself() -> None:
    assert find_duplicates(make_order(), make_context(history=(_duplicate(100),))) == ()


def test_of_two_duplicates_in_one_batch_only_the_later_one_is_caught() -> None:
    # Given items 100 and 101 of one batch, both in each other's history
    both = (_duplicate(100, created_at=NOW), _duplicate(101, created_at=NOW))

    earlier = find_duplicates(make_order(), make_context(item_id=100, history=both))
    later = find_duplicates(make_order(), make_context(item_id=101, history=both))

    assert earlier == ()
    assert [d.item_id for d in later] == [100]


def test_a_window_of_zero_days_finds_no_duplicates() -> None:
    rules = PreflightRules(duplicate_window_days=0)
    context = make_context(history=(_duplicate(7),), rules=rules)

    assert find_duplicates(make_order(), context) == ()


def test_no_duplicates_pass() -> None:
    assert check_duplicates((), 30).passed


def test_a_duplicate_fails_naming_the_earlier_order() -> None:
    earlier = _duplicate(7, batch_id="batch-a", order_id="order-0")

    result = check_duplicates([earlier], 30)

    assert not result.passed
    assert "order order-0 of batch batch-a (item 7)" in result.detail


# --- anchor profile ------------------------------------------------------------------------


EXACT = "running"  # the order's topic, so an exact-match anchor


def _anchors(*texts: str) -> tuple[PastOrder, ...]:
    return tuple(past(item_id, anchor_text=text) for item_id, text in enumerate(texts, start=1))


def test_the_anchor_profile_counts_earlier_orders_for_the_target_and_this_one() -> None:
    history = (
        *_anchors(EXACT, "shoes for trail runs"),
        past(50, target_url="https://www.acme-shoes.com/trail", anchor_text=EXACT),
        past(51, customer_id="customer-2", anchor_text=EXACT),
        past(52, anchor_text=EXACT, created_at=NOW - timedelta(days=40)),
    )
    order = make_order(anchor_text="Running")

    profile = anchor_profile(order, "exact", make_context(history=history))

    assert profile.to_json() == {
        "window_days": 30,
        "orders": 3,
        "exact": 2,
        "exact_share": 0.6667,
        "limit": 0.3,
    }


def test_a_partial_anchor_passes_whatever_the_share() -> None:
    profile = AnchorProfile(window_days=30, orders=5, exact=4, limit=0.3)
    assert check_anchor_profile(profile, "partial").passed


def test_an_exact_anchor_is_not_judged_below_three_orders() -> None:
    profile = AnchorProfile(window_days=30, orders=2, exact=2, limit=0.3)

    result = check_anchor_profile(profile, "exact")

    assert result.passed
    assert "not judged" in result.detail


def test_an_exact_anchor_lifting_the_share_above_the_limit_fails() -> None:
    profile = AnchorProfile(window_days=30, orders=3, exact=1, limit=0.3)

    result = check_anchor_profile(profile, "exact")

    assert not result.passed
    assert "1 of 3 exact (33%)" in result.detail
    assert "at most 30% allowed" in result.detail


@pytest.mark.parametrize(("orders", "exact"), [(4, 1), (10, 3)])
def test_an_exact_anchor_within_the_limit_passes(orders: int, exact: int) -> None:
    profile = AnchorProfile(window_days=30, orders=orders, exact=exact, limit=0.3)
    assert check_anchor_profile(profile, "exact").passed


# --- the prompt ------------------------------------------------------------------------------


def test_the_prompt_carries_the_publishers_bounds_links_terms_and_guidelines() -> None:
    prompt = build_prompt(make_order(), "partial", PUBLISHER)

    assert (prompt["min_words"], prompt["max_words"], prompt["target_words"]) == (450, 900, 675)
    assert prompt["max_outbound_links"] == 2
    assert prompt["forbidden_terms"] == ["casino", "miracle cure"]
    assert "Use British spelling." in prompt["guidelines"]
    assert "Never use these terms: casino, miracle cure." in prompt["guidelines"]
    assert any("at most 2 outbound links" in line for line in prompt["guidelines"])


def test_a_prompt_without_a_publisher_uses_the_defaults() -> None:
    prompt = build_prompt(make_order(), "partial")

    assert (prompt["min_words"], prompt["max_words"], prompt["target_words"]) == (300, 2000, 600)
    assert prompt["max_outbound_links"] == 3
    assert prompt["forbidden_terms"] == []
    assert not any("Never use" in line for line in prompt["guidelines"])


# --- the whole stage without a catalog (the shell before the catalog was wired) ---------------


ORDER_CHECKS = {"target_url", "target_domain", "anchor_text", "anchor_url", "language", "deadline"}
CATALOG_CHECKS = {
    "publisher_known",
    "publisher_language",
    "customer_known",
    "customer_active",
    "duplicate",
    "anchor_profile",
    "forbidden_topic",
    "anchor_terms",
}
MATRIX_KEYS = {
    "checks",
    "publisher_fit",
    "anchor_class",
    "anchor_profile",
    "duplicates",
    "prompt",
}


def test_preflight_of_a_good_order_returns_the_matrix_and_prompt() -> None:
    order = make_order()

    result = run_preflight(order, now=NOW)

    assert set(result) == MATRIX_KEYS
    assert all(check["passed"] for check in result["checks"].values())
    assert set(result["checks"]) == ORDER_CHECKS
    assert result["anchor_class"] == "partial"
    assert (result["publisher_fit"], result["anchor_profile"], result["duplicates"]) == (
        None,
        None,
        [],
    )
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
    with pytest.raises(InvalidInput, match="no writer for language 'fr'"):
        run_preflight(make_order(language="fr"), now=NOW)


def test_preflight_accepts_a_deadline_in_the_past() -> None:
    order = make_order(deadline=NOW - timedelta(hours=1))

    result = run_preflight(order, now=NOW)

    assert "already past" in result["checks"]["deadline"]["detail"]


# --- the whole stage with its context ---------------------------------------------------------


def test_preflight_with_a_context_records_the_whole_matrix() -> None:
    order = make_order(topic="trail running")
    history = (past(1), past(2))

    result = run_preflight(order, make_context(history=history))

    assert set(result) == MATRIX_KEYS
    assert set(result["checks"]) == ORDER_CHECKS | CATALOG_CHECKS
    assert all(check["passed"] for check in result["checks"].values())
    assert result["publisher_fit"] == {"language_accepted": True, "topic_overlap": 0.5}
    assert result["anchor_class"] == "partial"
    assert result["anchor_profile"] == {
        "window_days": 30,
        "orders": 3,
        "exact": 0,
        "exact_share": 0.0,
        "limit": 0.3,
    }
    assert result["duplicates"] == []
    assert result["prompt"]["target_words"] == 675
    assert result["prompt"]["max_outbound_links"] == 2


def test_the_context_clock_decides_the_deadline() -> None:
    order = make_order(deadline=NOW - timedelta(hours=1))

    result = run_preflight(order, make_context())

    assert "already past" in result["checks"]["deadline"]["detail"]


@pytest.mark.parametrize(
    ("order_fields", "context_fields", "error", "message"),
    [
        ({}, {"publisher": None}, InvalidInput, "publisher_known: unknown publisher"),
        (
            {"language": "sv"},
            {},
            InvalidInput,
            "publisher_language: publisher blog.example.org does not accept language sv",
        ),
        ({}, {"customer": None}, InvalidInput, "customer_known: unknown customer customer-1"),
        (
            {},
            {"customer": CUSTOMER.model_copy(update={"suspended": True})},
            CustomerSuspended,
            "customer_active: customer customer-1 is suspended",
        ),
        (
            {},
            {"history": (past(7, publisher_domain="blog.example.org"),)},
            DuplicateOrder,
            "duplicate: same customer, target and publisher as item 7",
        ),
        (
            {"anchor_text": "Running"},
            {"history": _anchors("running", "shoes for trail runs")},
            PolicyViolation,
            "anchor_profile: 2 of 3 exact",
        ),
        ({"topic": "online gambling"}, {}, PolicyViolation, "forbidden_topic: "),
        ({"anchor_text": "casino shoes"}, {}, PolicyViolation, "anchor_terms: "),
    ],
    ids=[
        "unknown publisher",
        "language not accepted",
        "unknown customer",
        "suspended customer",
        "duplicate",
        "too many exact anchors",
        "forbidden topic",
        "forbidden anchor term",
    ],
)
def test_preflight_raises_the_error_of_the_failed_catalog_rule(
    order_fields: dict[str, Any],
    context_fields: dict[str, Any],
    error: type[Exception],
    message: str,
) -> None:
    with pytest.raises(error) as raised:
        run_preflight(make_order(**order_fields), make_context(**context_fields))

    assert str(raised.value).startswith(message)


def test_a_refusal_keeps_the_matrix_but_no_prompt_in_its_details() -> None:
    history = (past(7, publisher_domain="blog.example.org"),)

    with pytest.raises(DuplicateOrder) as raised:
        run_preflight(make_order(), make_context(history=history))

    details = raised.value.details
    assert set(details) == MATRIX_KEYS - {"prompt"}
    assert details["duplicates"] == [7]
    assert details["checks"]["duplicate"]["passed"] is False
    assert details["checks"]["customer_active"]["passed"] is True


def test_the_order_checks_run_before_the_catalog_checks() -> None:
    # Both the writer and the publisher refuse French: the writer's reason is reported.
    with pytest.raises(InvalidInput, match=r"^language: no writer for language 'fr'"):
        run_preflight(make_order(language="fr"), make_context())
