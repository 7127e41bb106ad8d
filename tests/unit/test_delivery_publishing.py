"""Delivery rendering and the idempotent filesystem publisher."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pipeline.errors import DataError
from pipeline.manifest import OrderDocument
from pipeline.publishing import (
    FilesystemPublisher,
    Publisher,
    create_atomically,
    safe_slug,
    write_atomically,
)
from pipeline.stages.delivery import render_delivery

PUBLISHED_AT = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
DOCUMENT = '<!DOCTYPE html>\n<html lang="en"><body><p>Hello</p></body></html>\n'
OLD_NS = 1_000_000_000  # a modification time no real write would produce


def make_order(**overrides: Any) -> OrderDocument:
    fields: dict[str, Any] = {
        "order_id": "order:1@shop",
        "customer_id": "customer-1",
        "target_url": "https://www.acme.com/shoes",
        "anchor_text": "running shoes",
        "publisher_domain": "blog.example.org",
        "language": "sv",
        "topic": "löpning",
    }
    fields.update(overrides)
    return OrderDocument.model_validate(fields)


def make_publisher(outbox: Path) -> FilesystemPublisher:
    return FilesystemPublisher(outbox, clock=lambda: PUBLISHED_AT)


def publish(publisher: Publisher, **overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "key": "key-1",
        "batch_id": "batch-1",
        "order_id": "order:1@shop",
        "html_document": DOCUMENT,
        "metadata": {"customer_id": "customer-1"},
    }
    arguments.update(overrides)
    return publisher.publish(**arguments)


def freeze_mtime(*paths: Path) -> None:
    for path in paths:
        os.utime(path, ns=(OLD_NS, OLD_NS))


# --- rendering ---------------------------------------------------------------------------


def test_render_delivery_wraps_the_article_in_a_complete_document() -> None:
    article = {"title": 'Tips <&> "tricks"', "html": "<h1>Tips</h1>\n<p>Body</p>"}

    rendered = render_delivery(make_order(), article, batch_id="batch-1")

    document = rendered["html_document"]
    assert document.startswith("<!DOCTYPE html>\n")
    assert '<html lang="sv">' in document
    assert '<meta charset="utf-8">' in document
    assert "<title>Tips &lt;&amp;&gt; &quot;tricks&quot;</title>" in document
    assert "<article>\n<h1>Tips</h1>\n<p>Body</p>\n</article>" in document
    assert document.rstrip().endswith("</html>")


def test_render_delivery_gives_a_safe_slug_and_the_documented_key() -> None:
    rendered = render_delivery(make_order(), {"title": "T", "html": "<p>x</p>"}, batch_id="b-1")

    assert rendered["slug"] == "order_1_shop"
    expected = hashlib.sha256(b"b-1:order:1@shop:delivery").hexdigest()
    assert rendered["idempotency_key"] == expected


def test_the_key_differs_between_batches_and_orders() -> None:
    article = {"title": "T", "html": "<p>x</p>"}
    keys = {
        render_delivery(make_order(order_id=order_id), article, batch_id=batch_id)[
            "idempotency_key"
        ]
        for order_id in ("a", "b")
        for batch_id in ("b-1", "b-2")
    }
    assert len(keys) == 4


@pytest.mark.parametrize(
    ("identifier", "slug"),
    [("order-1.v2_x", "order-1.v2_x"), ("a:b@c", "a_b_c"), ("../etc", "_etc"), ("...", "_")],
)
def test_safe_slug(identifier: str, slug: str) -> None:
    assert safe_slug(identifier) == slug


# --- atomic writes -------------------------------------------------------------------------


def test_write_atomically_replaces_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "page.html"
    write_atomically(target, b"old")
    write_atomically(target, b"new")

    assert target.read_bytes() == b"new"
    assert [path.name for path in tmp_path.iterdir()] == ["page.html"]


def test_create_atomically_never_replaces_an_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "receipt.json"

    assert create_atomically(target, b"first") is True
    assert create_atomically(target, b"second") is False
    assert target.read_bytes() == b"first"
    assert [path.name for path in tmp_path.iterdir()] == ["receipt.json"]


# --- publishing ------------------------------------------------------------------------------
# What every publisher promises (the receipt, one effect per key, one URL per order) is
# in tests/contracts/test_publisher_contract.py; these are the filesystem's own details.


def test_publish_writes_the_page_and_its_receipt(tmp_path: Path) -> None:
    receipt = publish(make_publisher(tmp_path))

    page = tmp_path / "batch-1" / "order_1_shop.html"
    receipt_path = tmp_path / "batch-1" / "order_1_shop.receipt.json"
    assert page.read_text(encoding="utf-8") == DOCUMENT
    assert json.loads(receipt_path.read_text(encoding="utf-8")) == receipt
    assert receipt == {
        "idempotency_key": "key-1",
        "batch_id": "batch-1",
        "order_id": "order:1@shop",
        "published_url": page.absolute().as_uri(),
        "published_at": "2026-06-01T12:00:00+00:00",
        "sha256": hashlib.sha256(DOCUMENT.encode()).hexdigest(),
        "metadata": {"customer_id": "customer-1"},
    }
    assert receipt["published_url"].startswith("file:///")
    assert sorted(path.name for path in page.parent.iterdir()) == [
        "order_1_shop.html",
        "order_1_shop.receipt.json",
    ]


def test_a_second_publish_with_the_same_key_changes_nothing(tmp_path: Path) -> None:
    # Given a published page whose files carry a known modification time
    first = publish(make_publisher(tmp_path))
    page = tmp_path / "batch-1" / "order_1_shop.html"
    receipt_path = tmp_path / "batch-1" / "order_1_shop.receipt.json"
    freeze_mtime(page, receipt_path)

    # When it is published again, even by another process with another clock and document
    later = FilesystemPublisher(tmp_path, clock=lambda: datetime(2030, 1, 1, tzinfo=UTC))
    second = publish(later, html_document="<p>changed</p>")

    # Then the first receipt comes back and neither file was touched
    assert second == first
    assert page.stat().st_mtime_ns == OLD_NS
    assert receipt_path.stat().st_mtime_ns == OLD_NS
    assert page.read_text(encoding="utf-8") == DOCUMENT


def test_a_different_key_for_an_already_published_page_is_refused(tmp_path: Path) -> None:
    publisher = make_publisher(tmp_path)
    publish(publisher)

    with pytest.raises(DataError, match="another publication") as raised:
        publish(publisher, key="key-2")

    assert raised.value.details["found_key"] == "key-1"


def test_an_unreadable_receipt_is_reported(tmp_path: Path) -> None:
    receipt_path = tmp_path / "batch-1" / "order_1_shop.receipt.json"
    receipt_path.parent.mkdir()
    receipt_path.write_text("{not json", encoding="utf-8")

    with pytest.raises(DataError, match="unreadable receipt"):
        publish(make_publisher(tmp_path))


def test_a_page_left_without_receipt_by_a_crash_is_completed(tmp_path: Path) -> None:
    # Given a crash after the page was written but before its receipt
    page = tmp_path / "batch-1" / "order_1_shop.html"
    page.parent.mkdir()
    page.write_text("<p>half-finished run</p>", encoding="utf-8")

    receipt = publish(make_publisher(tmp_path))

    assert page.read_text(encoding="utf-8") == DOCUMENT
    assert receipt["sha256"] == hashlib.sha256(DOCUMENT.encode()).hexdigest()
