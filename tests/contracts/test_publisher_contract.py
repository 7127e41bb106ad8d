"""The Publisher contract (``pipeline.publishing.Publisher``), run against every publisher.

* ``filesystem``: :class:`FilesystemPublisher` over a temporary outbox.
* ``webhook``: :class:`WebhookPublisher` against the real local HTTP publisher of
  ``tests.support_publisher_server``, which honours ``Idempotency-Key``.

Both promise what the delivery stage relies on: the documented receipt, and one
effect per key, whoever repeats the publish (the same worker, or another one
after a crash).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

import pipeline.publishing
from pipeline.publishing import FilesystemPublisher, Publisher, safe_slug
from pipeline.webhook import WebhookPublisher
from tests.support_publisher_server import PublisherServer

DOCUMENT = '<!DOCTYPE html>\n<html lang="en"><body><p>Hello</p></body></html>\n'
RECEIPT_FIELDS = {
    "idempotency_key",
    "batch_id",
    "order_id",
    "published_url",
    "published_at",
    "sha256",
}


@dataclass
class Harness:
    """One publisher under test and what it takes to judge it."""

    #: builds a publisher; every call is another worker sharing the same outside world
    make: Callable[[], Publisher]
    #: how many times an order was really published (a page written, a page posted)
    effects: Callable[[str], int]


def _filesystem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    writes: Counter[str] = Counter()
    write_page = pipeline.publishing.write_atomically

    def counting(path: Path, data: bytes) -> None:
        writes[path.name] += 1
        write_page(path, data)

    monkeypatch.setattr(pipeline.publishing, "write_atomically", counting)
    yield Harness(
        make=lambda: FilesystemPublisher(tmp_path),
        effects=lambda order_id: writes[f"{safe_slug(order_id)}.html"],
    )


def _webhook() -> Iterator[Harness]:
    publishers: list[WebhookPublisher] = []
    with PublisherServer() as server:

        def make() -> Publisher:
            publishers.append(WebhookPublisher(lambda domain: server.url, timeout=5.0))
            return publishers[-1]

        try:
            yield Harness(make=make, effects=server.effective_publishes)
        finally:
            for publisher in publishers:
                publisher.close()


@pytest.fixture(
    params=[
        pytest.param("filesystem", id="filesystem"),
        pytest.param("webhook", id="webhook", marks=pytest.mark.integration),
    ]
)
def harness(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Harness]:
    """Each publisher in turn."""
    if request.param == "filesystem":
        yield from _filesystem(tmp_path, monkeypatch)
    else:
        yield from _webhook()


def publish(publisher: Publisher, **overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "key": "key-1",
        "batch_id": "batch-1",
        "order_id": "order:1@shop",
        "html_document": DOCUMENT,
        "metadata": {"publisher_domain": "blog.example.org", "customer_id": "customer-1"},
    }
    arguments.update(overrides)
    return publisher.publish(**arguments)


def test_the_receipt_has_the_documented_fields(harness: Harness) -> None:
    receipt = publish(harness.make())

    assert set(receipt) >= RECEIPT_FIELDS
    assert receipt["idempotency_key"] == "key-1"
    assert (receipt["batch_id"], receipt["order_id"]) == ("batch-1", "order:1@shop")
    assert isinstance(receipt["published_url"], str) and receipt["published_url"]
    assert datetime.fromisoformat(receipt["published_at"]).utcoffset() is not None
    assert receipt["sha256"] == hashlib.sha256(DOCUMENT.encode("utf-8")).hexdigest()
    assert json.loads(json.dumps(receipt)) == receipt  # the ledger stores it as JSON


def test_the_same_key_twice_returns_the_same_receipt_and_publishes_once(harness: Harness) -> None:
    publisher = harness.make()

    first = publish(publisher)
    second = publish(publisher)

    assert second == first
    assert harness.effects("order:1@shop") == 1


def test_another_worker_repeating_the_key_gets_the_first_receipt(harness: Harness) -> None:
    # Given a publish whose worker died before the ledger heard of the receipt
    first = publish(harness.make())

    # When another worker delivers the order again with the same key
    again = publish(harness.make())

    # Then it gets the first publication back, and nothing was published twice
    assert again == first
    assert harness.effects("order:1@shop") == 1


def test_each_order_is_published_once_at_its_own_url(harness: Harness) -> None:
    publisher = harness.make()

    first = publish(publisher)
    second = publish(publisher, key="key-2", order_id="order-2")

    assert first["published_url"] != second["published_url"]
    assert (harness.effects("order:1@shop"), harness.effects("order-2")) == (1, 1)
