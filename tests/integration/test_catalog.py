"""The catalog in the real ledger: imports through the CLI and the repository, and lookups.

Each test names its customers and publishers with a fresh suffix, so tests sharing the
session's database never see each other's rows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from cli.sample_orders import CATALOG, load_catalog
from ledger.batches import insert_batch
from ledger.catalog import (
    customer_tiers,
    customers_by_id,
    publishers_by_domain,
    recent_orders,
    upsert_catalog,
)
from ledger.db import transaction
from ledger.models import Customer, Publisher
from metrics.keys import publisher_cache_key
from metrics.redis_client import redis_client
from pipeline.catalog import Catalog, CustomerProfile, CustomerTier, PublisherProfile
from pipeline.errors import DataError
from pipeline.manifest import validate_submission

pytestmark = pytest.mark.integration


def batchline(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a child process against the session's servers."""
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _suffix() -> str:
    return uuid.uuid4().hex[:8]


def _catalog(tag: str, *, tier: str = "premium", max_words: int = 900) -> dict[str, Any]:
    return {
        "customers": [
            {"customer_id": f"acme-{tag}", "name": "Acme Outdoor", "tier": tier},
            {"customer_id": f"beta-{tag}", "name": "Beta Books", "suspended": True},
        ],
        "publishers": [
            {
                "domain": f"outdoor-{tag}.example.com",
                "languages": ["en"],
                "topics": ["camping", "hiking"],
                "min_words": 450,
                "max_words": max_words,
                "forbidden_topics": ["gambling"],
            },
            {"domain": f"resor-{tag}.example.se", "languages": ["sv", "en"]},
        ],
    }


def _counts() -> tuple[int, int]:
    with transaction() as session:
        customers = session.scalar(select(func.count()).select_from(Customer))
        publishers = session.scalar(select(func.count()).select_from(Publisher))
    return int(customers or 0), int(publishers or 0)


def _stored(catalog: Catalog) -> Catalog:
    with transaction() as session:
        customers = customers_by_id(session, [c.customer_id for c in catalog.customers])
        publishers = publishers_by_domain(session, [p.domain for p in catalog.publishers])
    return Catalog(
        customers=tuple(customers[c.customer_id] for c in catalog.customers),
        publishers=tuple(publishers[p.domain] for p in catalog.publishers),
    )


# --- imports ----------------------------------------------------------------------------------


def test_a_json_catalog_imported_through_the_cli_is_stored(service_env, tmp_path: Path) -> None:
    data = _catalog(_suffix())
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(data), encoding="utf-8")

    result = batchline("catalog", "import", str(path), env=service_env)

    assert result.returncode == 0, result.stderr
    assert "imported 2 customers and 2 publishers" in result.stdout
    assert _stored(Catalog.model_validate(data)) == Catalog.model_validate(data)


def test_csv_files_imported_through_the_cli_are_stored(service_env, tmp_path: Path) -> None:
    tag = _suffix()
    customers = tmp_path / "customers.csv"
    customers.write_text(
        f"customer_id,name,tier,suspended\nacme-{tag},Acme,standard,no\nbeta-{tag},Beta,,yes\n",
        encoding="utf-8",
    )
    publishers = tmp_path / "publishers.csv"
    publishers.write_text(
        "domain,languages,topics,min_words,max_words,forbidden_topics,forbidden_terms\n"
        f"blog-{tag}.example.de,de|en,reisen|wandern,500,1000,glücksspiel,casino|sportwetten\n",
        encoding="utf-8",
    )

    result = batchline("catalog", "import", str(customers), str(publishers), env=service_env)

    assert result.returncode == 0, result.stderr
    assert "imported 2 customers and 1 publishers" in result.stdout
    with transaction() as session:
        stored = customers_by_id(session, [f"acme-{tag}", f"beta-{tag}"])
        publisher = publishers_by_domain(session, [f"blog-{tag}.example.de"])
    assert stored[f"acme-{tag}"].tier is CustomerTier.STANDARD
    assert stored[f"beta-{tag}"].suspended is True
    assert publisher[f"blog-{tag}.example.de"] == PublisherProfile(
        domain=f"blog-{tag}.example.de",
        languages=("de", "en"),
        topics=("reisen", "wandern"),
        min_words=500,
        max_words=1000,
        forbidden_topics=("glücksspiel",),
        forbidden_terms=("casino", "sportwetten"),
    )


def test_the_shipped_sample_catalog_imports_and_imports_again(service_env) -> None:
    first = batchline("catalog", "import", str(CATALOG), env=service_env)
    second = batchline("catalog", "import", str(CATALOG), env=service_env)

    assert (first.returncode, second.returncode) == (0, 0), first.stderr + second.stderr
    assert first.stdout == second.stdout
    assert _stored(load_catalog()) == load_catalog()


def test_an_invalid_file_among_several_writes_nothing(service_env, tmp_path: Path) -> None:
    # Given a valid catalog file and a customers file with a bad tier on its third line
    tag = _suffix()
    good = tmp_path / "good.json"
    good.write_text(json.dumps(_catalog(tag)), encoding="utf-8")
    bad = tmp_path / "bad.csv"
    bad.write_text(f"customer_id,name,tier\nc1-{tag},C1,basic\nc2-{tag},C2,gold\n")
    before = _counts()

    result = batchline("catalog", "import", str(good), str(bad), env=service_env)

    assert result.returncode == 2
    error_lines = result.stderr.strip().splitlines()
    assert len(error_lines) == 1
    assert f"{bad} line 3: tier: Input should be" in error_lines[0]
    assert "(got 'gold')" in error_lines[0]
    assert _counts() == before
    with transaction() as session:
        assert customers_by_id(session, [f"acme-{tag}", f"c1-{tag}"]) == {}


def test_reimporting_updates_changed_rows_and_leaves_others_alone(service_env) -> None:
    tag = _suffix()
    original = Catalog.model_validate(_catalog(tag))
    changed = Catalog.model_validate(_catalog(tag, tier="basic", max_words=1200))
    changed = changed.model_copy(
        update={"customers": changed.customers[:1], "publishers": changed.publishers[:1]}
    )
    with transaction() as session:
        assert upsert_catalog(session, original) == (2, 2)
        first_update = session.scalar(
            select(Publisher.updated_at).where(Publisher.domain == f"outdoor-{tag}.example.com")
        )

    with transaction() as session:
        assert upsert_catalog(session, changed) == (1, 1)

    stored = _stored(original)
    assert stored.customers[0].tier is CustomerTier.BASIC
    assert stored.customers[1] == original.customers[1]
    assert stored.publishers[0].max_words == 1200
    assert stored.publishers[1] == original.publishers[1]
    with transaction() as session:
        second_update = session.scalar(
            select(Publisher.updated_at).where(Publisher.domain == f"outdoor-{tag}.example.com")
        )
    assert first_update is not None and second_update is not None
    assert second_update > first_update


def test_an_import_drops_the_cached_profiles_it_changed(service_env, tmp_path: Path) -> None:
    data = _catalog(_suffix())
    domain = data["publishers"][0]["domain"]
    client = redis_client()
    client.set(publisher_cache_key(domain), "stale", ex=60)
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(data), encoding="utf-8")

    result = batchline("catalog", "import", str(path), env=service_env)

    assert result.returncode == 0, result.stderr
    assert client.get(publisher_cache_key(domain)) is None


def test_catalog_show_json_can_be_imported_again(service_env, tmp_path: Path) -> None:
    data = _catalog(_suffix())
    with transaction() as session:
        upsert_catalog(session, Catalog.model_validate(data))

    shown = batchline("catalog", "show", "--json", env=service_env)
    table = batchline("catalog", "show", env=service_env)

    assert shown.returncode == 0, shown.stderr
    exported = Catalog.model_validate_json(shown.stdout)
    assert {c["customer_id"] for c in data["customers"]} <= {
        c.customer_id for c in exported.customers
    }
    path = tmp_path / "export.json"
    path.write_text(shown.stdout, encoding="utf-8")
    assert batchline("catalog", "import", str(path), env=service_env).returncode == 0
    assert table.returncode == 0, table.stderr
    assert "customers" in table.stdout and "publishers" in table.stdout


# --- lookups ----------------------------------------------------------------------------------


def test_lookups_leave_out_unknown_keys(service_env) -> None:
    tag = _suffix()
    with transaction() as session:
        upsert_catalog(session, Catalog.model_validate(_catalog(tag)))

    with transaction() as session:
        customers = customers_by_id(session, [f"acme-{tag}", f"ghost-{tag}"])
        tiers = customer_tiers(session, [f"acme-{tag}", f"beta-{tag}", f"ghost-{tag}"])
        publishers = publishers_by_domain(session, [f"resor-{tag}.example.se", "nowhere.example"])
        empty = (customers_by_id(session, []), publishers_by_domain(session, []))

    assert list(customers) == [f"acme-{tag}"]
    assert customers[f"acme-{tag}"] == CustomerProfile(
        customer_id=f"acme-{tag}", name="Acme Outdoor", tier="premium"
    )
    assert tiers == {f"acme-{tag}": CustomerTier.PREMIUM, f"beta-{tag}": CustomerTier.BASIC}
    assert list(publishers) == [f"resor-{tag}.example.se"]
    assert empty == ({}, {})


def test_a_stored_profile_that_no_longer_validates_is_a_data_error(service_env) -> None:
    domain = f"broken-{_suffix()}.example.com"
    with transaction() as session:
        session.execute(
            text("INSERT INTO publishers (domain, profile) VALUES (:d, CAST(:p AS jsonb))"),
            {"d": domain, "p": json.dumps({"domain": domain})},
        )
    try:
        with (
            pytest.raises(DataError, match=f"stored profile of publisher {domain}"),
            transaction() as session,
        ):
            publishers_by_domain(session, [domain])
    finally:
        with transaction() as session:
            session.execute(text("DELETE FROM publishers WHERE domain = :d"), {"d": domain})


def _order(tag: str, number: int, customer: str, **overrides: Any) -> dict[str, Any]:
    return {
        "order_id": f"o{number}",
        "customer_id": customer,
        "target_url": f"https://shop-{tag}.example.com/page-{number}",
        "anchor_text": f"anchor {number}",
        "publisher_domain": f"outdoor-{tag}.example.com",
        "language": "en",
        "topic": "camping",
        **overrides,
    }


def test_recent_orders_returns_the_customers_placed_orders_since_the_cutoff(service_env) -> None:
    # Given a batch: four orders of A (one failed, one cancelled, one old), one of B, one of C
    tag = _suffix()
    a, b, c = f"a-{tag}", f"b-{tag}", f"c-{tag}"
    documents = [
        _order(tag, 1, a, topic="hiking"),
        _order(tag, 2, a),
        _order(tag, 3, a),
        _order(tag, 4, a),
        _order(tag, 5, a),
        _order(tag, 6, b),
        _order(tag, 7, c),
    ]
    submission = validate_submission(documents, "catalog-test", "normal", None, max_items=10)
    batch_id = f"catalog-{tag}"
    with transaction() as session:
        ids = insert_batch(
            session,
            batch_id=batch_id,
            submission=submission,
            manifest_sha256=submission.digest(),
            task_id="t",
        )
        changes = [(ids[1], "FAILED"), (ids[2], "CANCELLED"), (ids[4], "DELIVERED")]
        for item_id, state in changes:
            session.execute(
                text("UPDATE items SET state = :s WHERE id = :i"), {"s": state, "i": item_id}
            )
        session.execute(
            text("UPDATE items SET created_at = now() - interval '40 days' WHERE id = :i"),
            {"i": ids[3]},
        )

    with transaction() as session:
        found = recent_orders(session, [a, b], since=datetime.now(UTC) - timedelta(days=30))

    assert [past.item_id for past in found] == [ids[0], ids[4], ids[5]]
    first = found[0]
    assert (first.customer_id, first.publisher_domain) == (a, f"outdoor-{tag}.example.com")
    assert first.target_url == f"https://shop-{tag}.example.com/page-1"
    assert (first.anchor_text, first.topic) == ("anchor 1", "hiking")
    assert (first.batch_id, first.order_id) == (batch_id, "o1")
    assert first.created_at.tzinfo is not None
    with transaction() as session:
        assert recent_orders(session, [], since=datetime.now(UTC)) == []
        # Narrowed to the targets a chunk is about, only their orders come back.
        since = datetime.now(UTC) - timedelta(days=30)
        target = f"https://shop-{tag}.example.com/page-5"
        narrowed = recent_orders(session, [a, b], since=since, target_urls=[target])
    assert [past.item_id for past in narrowed] == [ids[4]]
