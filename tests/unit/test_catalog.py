"""The catalog: profiles, catalog files (JSON and CSV) and the sample data the demo ships."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cli.catalog_cmd import read_catalog_file, read_catalog_files
from cli.sample_orders import CATALOG, load_catalog, load_matches, sample_orders
from pipeline.catalog import (
    Catalog,
    CatalogError,
    CustomerProfile,
    CustomerTier,
    PublisherProfile,
    contains_phrase,
    merge_catalogs,
    parse_catalog_csv,
    parse_catalog_json,
    words_of,
)
from pipeline.history import PastOrder, PreflightContext, PreflightRules
from pipeline.manifest import OrderDocument
from pipeline.settings import Settings
from pipeline.stages.preflight import run_preflight
from pipeline.stages.writing import run_writing

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)

# --- words, phrases and topic overlap -------------------------------------------------------


def test_words_are_case_folded_letters_and_digits_in_any_script() -> None:
    assert words_of("Grüner Tee, 2 Tassen!") == ("grüner", "tee", "2", "tassen")


@pytest.mark.parametrize(
    ("text", "phrase", "expected"),
    [
        ("best payday loans 2026", "payday loans", True),
        ("Payday-Loans explained", "payday loans", True),
        ("payday and loans", "payday loans", False),
        ("better running", "bet", False),
        ("anything", "", False),
    ],
)
def test_contains_phrase_matches_whole_words_in_order(
    text: str, phrase: str, expected: bool
) -> None:
    assert contains_phrase(text, phrase) is expected


PUBLISHER = PublisherProfile(
    domain="blog.example.org",
    languages=("en",),
    topics=("dental care", "health"),
    forbidden_topics=("gambling",),
    forbidden_terms=("casino",),
)


@pytest.mark.parametrize(
    ("topic", "overlap"),
    [("dental care", 1.0), ("Health", 1.0), ("dental implants", 0.5), ("camping", 0.0), ("", 0.0)],
)
def test_topic_overlap_is_the_share_of_topic_words_the_publisher_covers(
    topic: str, overlap: float
) -> None:
    assert PUBLISHER.topic_overlap(topic) == overlap


def test_forbidden_topics_and_terms_are_found_as_phrases() -> None:
    assert PUBLISHER.forbidden_topic_in("Online gambling guide") == "gambling"
    assert PUBLISHER.forbidden_topic_in("dental care") is None
    assert PUBLISHER.forbidden_term_in("Casino night") == "casino"
    assert PUBLISHER.forbidden_term_in("casinos") is None


# --- the Catalog model and JSON files -------------------------------------------------------


def test_a_catalog_rejects_a_customer_listed_twice() -> None:
    customer = {"customer_id": "acme", "name": "Acme"}

    with pytest.raises(CatalogError, match=r"customers\[1\] repeats 'acme' of customers\[0\]"):
        parse_catalog_json({"customers": [customer, customer]}, "c.json")


def test_json_catalog_is_validated_into_profiles() -> None:
    data = {
        "customers": [{"customer_id": "acme", "name": "Acme", "tier": "premium"}],
        "publishers": [{"domain": "Blog.Example.org", "languages": ["en"], "topics": ["Pets"]}],
    }

    catalog = parse_catalog_json(data, "c.json")

    assert catalog.customers[0].tier is CustomerTier.PREMIUM
    assert catalog.publishers[0].domain == "blog.example.org"
    assert catalog.publishers[0].topics == ("pets",)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "c.json: must be an object with customers and publishers"),
        (
            {"customers": [{"customer_id": "a", "name": "A", "tier": "gold"}]},
            "c.json: customers[0].tier: Input should be 'premium', 'standard' or 'basic'"
            " (got 'gold')",
        ),
        (
            {"publishers": [{"domain": "a.com", "languages": []}]},
            "c.json: publishers[0].languages: ",
        ),
        (
            {
                "publishers": [
                    {"domain": "a.com", "languages": ["en"], "min_words": 900, "max_words": 500}
                ]
            },
            "c.json: publishers[0]: min_words must not exceed max_words",
        ),
        ({"matches": {}}, "c.json: matches: Extra inputs are not permitted"),
    ],
    ids=["not an object", "bad tier", "no languages", "bounds reversed", "unknown key"],
)
def test_an_invalid_json_catalog_names_the_field(data: Any, message: str) -> None:
    with pytest.raises(CatalogError) as raised:
        parse_catalog_json(data, "c.json")

    assert str(raised.value).startswith(message)


# --- CSV files ---------------------------------------------------------------------------------

CUSTOMERS_CSV = """customer_id,name,tier,suspended
acme,Acme Shoes,premium,false
beta, Beta Books ,,
gamma,"Gamma, Inc.",basic,yes
"""
PUBLISHERS_CSV = """domain,languages,topics,min_words,max_words,forbidden_terms,guidelines
blog.example.org,en|de,running| fitness ,450,900,casino,Use British spelling.|No lists.
news.example.com,sv,,,,,
"""


def test_a_customers_csv_becomes_customers_with_defaults_for_empty_cells() -> None:
    catalog = parse_catalog_csv(CUSTOMERS_CSV, "customers.csv")

    assert catalog.publishers == ()
    assert catalog.customers == (
        CustomerProfile(customer_id="acme", name="Acme Shoes", tier="premium", suspended=False),
        CustomerProfile(customer_id="beta", name="Beta Books"),
        CustomerProfile(customer_id="gamma", name="Gamma, Inc.", tier="basic", suspended=True),
    )


def test_a_publishers_csv_splits_list_cells_on_the_bar() -> None:
    catalog = parse_catalog_csv(PUBLISHERS_CSV, "publishers.csv")

    first, second = catalog.publishers
    assert first.languages == ("en", "de")
    assert first.topics == ("running", "fitness")
    assert (first.min_words, first.max_words) == (450, 900)
    assert first.forbidden_terms == ("casino",)
    assert first.guidelines == ("Use British spelling.", "No lists.")
    assert second == PublisherProfile(domain="news.example.com", languages=("sv",))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "x.csv: empty file"),
        ("name,tier\nAcme,basic\n", "x.csv line 1: the header must name either customer_id"),
        ("customer_id,domain\n", "x.csv line 1: the header must name either customer_id"),
        ("customer_id,name,colour\n", "x.csv line 1: unknown column 'colour'"),
        ("customer_id,name,name\n", "x.csv line 1: column 'name' appears twice"),
        (
            "customer_id,name,tier\nacme,Acme,basic\nbeta,Beta,gold\n",
            "x.csv line 3: tier: Input should be 'premium', 'standard' or 'basic' (got 'gold')",
        ),
        (
            "customer_id,name,suspended\nacme,Acme,maybe\n",
            "x.csv line 2: suspended: Input should be a valid boolean",
        ),
        ("customer_id,name\nacme,Acme,extra\n", "x.csv line 2: more cells than the header"),
        ("customer_id,name\nacme,Acme\nb,B\nacme,Again\n", "x.csv line 4: 'acme' repeats line 2"),
        ("domain,languages\nblog.example.org,\n", "x.csv line 2: languages: Field required"),
        (
            "domain,languages,min_words\nblog.example.org,en,lots\n",
            "x.csv line 2: min_words: Input should be a valid integer",
        ),
    ],
    ids=[
        "empty",
        "no key column",
        "both key columns",
        "unknown column",
        "repeated column",
        "bad tier",
        "bad boolean",
        "extra cell",
        "repeated key",
        "empty required list",
        "bad number",
    ],
)
def test_an_invalid_csv_names_the_line_and_field(text: str, message: str) -> None:
    with pytest.raises(CatalogError) as raised:
        parse_catalog_csv(text, "x.csv")

    assert str(raised.value).startswith(message)


def test_catalogs_from_several_files_are_joined() -> None:
    customers = parse_catalog_csv(CUSTOMERS_CSV, "customers.csv")
    publishers = parse_catalog_csv(PUBLISHERS_CSV, "publishers.csv")

    joined = merge_catalogs([("customers.csv", customers), ("publishers.csv", publishers)])

    assert (len(joined.customers), len(joined.publishers)) == (3, 2)


def test_a_customer_in_two_files_is_an_error() -> None:
    customers = parse_catalog_csv(CUSTOMERS_CSV, "a.csv")

    with pytest.raises(CatalogError, match=r"^b.csv: customer 'acme' is also in a.csv$"):
        merge_catalogs([("a.csv", customers), ("b.csv", customers)])


def test_a_customer_id_may_equal_a_publisher_domain() -> None:
    catalog = Catalog(
        customers=(CustomerProfile(customer_id="acme.com", name="Acme"),),
        publishers=(PublisherProfile(domain="acme.com", languages=("en",)),),
    )

    assert merge_catalogs([("a.json", catalog)]) == catalog


# --- reading files (the CLI's reader) ----------------------------------------------------------


def test_files_are_read_as_json_or_csv_by_suffix_or_content(tmp_path: Path) -> None:
    (tmp_path / "customers.csv").write_text(CUSTOMERS_CSV, encoding="utf-8-sig")  # with a BOM
    (tmp_path / "publishers.txt").write_text(PUBLISHERS_CSV, encoding="utf-8")
    (tmp_path / "more").write_text(
        json.dumps({"customers": [{"customer_id": "delta", "name": "D"}]}), encoding="utf-8"
    )

    catalog = read_catalog_files(
        [tmp_path / "customers.csv", tmp_path / "publishers.txt", tmp_path / "more"]
    )

    assert [c.customer_id for c in catalog.customers] == ["acme", "beta", "gamma", "delta"]
    assert len(catalog.publishers) == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"{not json", "not valid JSON"), (b"customer_id,name\nacme,\xff\n", "not UTF-8 text")],
)
def test_unreadable_files_are_named(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / ("bad.json" if content.startswith(b"{") else "bad.csv")
    path.write_bytes(content)

    with pytest.raises(CatalogError, match=message):
        read_catalog_file(path)


def test_preflight_rules_come_from_settings() -> None:
    settings = Settings(
        batch_anchor_window_days=14,
        batch_exact_anchor_max_share=0.5,
        batch_duplicate_window_days=7,
    )

    assert PreflightRules.from_settings(settings) == PreflightRules(14, 0.5, 7)


# --- the sample data the demo ships ------------------------------------------------------------


def test_the_sample_catalog_is_an_importable_catalog_file() -> None:
    catalog = read_catalog_file(CATALOG)

    assert catalog == load_catalog()
    assert len(catalog.customers) >= 8
    assert len(catalog.publishers) >= 8
    assert {c.tier for c in catalog.customers} == set(CustomerTier)
    assert sum(c.suspended for c in catalog.customers) == 1
    assert {"en", "sv", "de"} <= {lang for p in catalog.publishers for lang in p.languages}
    assert all(p.forbidden_topics and p.forbidden_terms for p in catalog.publishers)


def test_sample_orders_name_only_catalog_entries_and_never_the_suspended_customer() -> None:
    catalog = load_catalog()
    customers = {c.customer_id: c for c in catalog.customers}
    domains = {p.domain for p in catalog.publishers}

    orders = sample_orders(500)

    assert all(customers[o["customer_id"]].suspended is False for o in orders)
    assert {o["publisher_domain"] for o in orders} <= domains
    assert set(load_matches()) <= set(customers)


def _contexts(orders: list[OrderDocument]) -> list[PreflightContext]:
    """Item i's context as the shell builds it: every earlier order is in its history."""
    catalog = load_catalog()
    customers = {c.customer_id: c for c in catalog.customers}
    publishers = {p.domain: p for p in catalog.publishers}
    history = tuple(
        PastOrder(
            item_id=item_id,
            customer_id=o.customer_id,
            target_url=str(o.target_url),
            publisher_domain=o.publisher_domain,
            anchor_text=o.anchor_text,
            topic=o.topic,
            created_at=NOW - timedelta(minutes=1),
        )
        for item_id, o in enumerate(orders, start=1)
    )
    return [
        PreflightContext(
            item_id=item_id,
            customer=customers.get(o.customer_id),
            publisher=publishers.get(o.publisher_domain),
            history=history,
            now=NOW,
        )
        for item_id, o in enumerate(orders, start=1)
    ]


def test_every_sample_order_passes_preflight_and_the_writer_meets_its_publishers_bounds() -> None:
    # Given 300 sample orders, each seeing all the earlier ones as its history
    orders = [OrderDocument.model_validate(raw) for raw in sample_orders(300, seed=3)]
    publishers = {p.domain: p for p in load_catalog().publishers}
    overlaps: Counter[float] = Counter()

    for order, context in zip(orders, _contexts(orders), strict=True):
        matrix = run_preflight(order, context)  # raises if any rule refuses
        article = run_writing(order, matrix["prompt"])
        bounds = publishers[order.publisher_domain]

        assert bounds.min_words <= article["word_count"] <= bounds.max_words
        assert bounds.forbidden_term_in(article["html"]) is None
        overlaps[matrix["publisher_fit"]["topic_overlap"]] += 1

    assert set(overlaps) == {1.0}  # every sample topic is one the publisher lists


def test_the_microblog_is_shorter_than_the_offline_writer_can_write() -> None:
    # The sample catalog's case of a length no rewrite can reach: even a target of a
    # single word gives more words than the microblog takes.
    microblog = next(p for p in load_catalog().publishers if p.max_words <= 120)

    for raw in sample_orders(50):
        order = OrderDocument.model_validate({**raw, "language": "en"})
        article = run_writing(order, {"target_words": 1, "language": "en"})
        assert article["word_count"] > microblog.max_words
