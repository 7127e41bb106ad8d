"""Webhook delivery against a real HTTP publisher: a lost response never publishes twice.

The publisher (``tests.support_publisher_server``) honours ``Idempotency-Key`` like
Stripe. The crash test kills a real process between the POST and the commit of
the receipt; the retry must reach the publisher again (the ledger never heard of
the receipt) and get the first publish back, not a second one.

LEAD - switching the crash test to real workers, once ``DELIVERY_BACKEND=webhook``
and the catalog's ``webhook_url`` are wired into ``tasks.handlers``:

1. Build a stack like ``tests/chaos/conftest.py``'s ``ChaosStack`` (short lease and
   visibility timeouts, beat for the sweeper) with ``DELIVERY_BACKEND=webhook`` in
   its env, and a catalog whose publisher has ``webhook_url=server.url``.
2. ``server.hold(60)``, submit a one-order batch, ``server.wait_for_publishes(order, 1)``.
3. SIGKILL the worker's pool child (``_children(worker.pid)``) instead of ``child``.
4. Wait for the batch to finalize; keep the three assertions of
   :func:`test_a_worker_killed_after_the_post_does_not_publish_twice`, plus
   ``assert_each_delivered_once``.

Until then :func:`deliver` stands in for ``tasks.handlers._delivery``: the same
look-up, publish and commit against the real ledger, run in a real process.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from ledger.db import transaction
from ledger.idempotency import remember, remembered
from pipeline.errors import PermanentError, RateLimited, TransientError
from pipeline.publishing import Publisher
from pipeline.stages.delivery import idempotency_key
from pipeline.webhook import WebhookPublisher
from tests.integration.helpers import wait_until
from tests.support_publisher_server import PublisherServer

pytestmark = pytest.mark.integration

DOMAIN = "blog.example.org"
HOLD_SECONDS = 60.0  # far longer than the test needs: the kill, not the clock, ends the wait


def make_delivery(order_id: str, html: str = "<p>Hello</p>") -> dict[str, Any]:
    """The arguments of one publish, keyed as the delivery stage keys them."""
    batch_id = f"webhook-{uuid.uuid4().hex[:8]}"
    return {
        "key": idempotency_key(batch_id, order_id),
        "batch_id": batch_id,
        "order_id": order_id,
        "html_document": html,
        "metadata": {"publisher_domain": DOMAIN, "customer_id": "customer-1"},
    }


def webhook_publisher(endpoint: str, timeout: float = 5.0) -> WebhookPublisher:
    """A publisher that sends every domain to ``endpoint``."""
    return WebhookPublisher(lambda domain: endpoint, timeout=timeout)


def deliver(publisher: Publisher, delivery: dict[str, Any]) -> dict[str, Any]:
    """Publish unless the ledger remembers the key, then commit the receipt at once.

    Mirrors ``tasks.handlers._delivery`` step for step (see the module docstring).
    """
    with transaction() as session:
        receipt = remembered(session, delivery["key"])
    if receipt is None:
        receipt = publisher.publish(**delivery)
        with transaction() as session:
            receipt = remember(
                session, key=delivery["key"], scope="delivery", result=receipt, ttl_hours=1
            )
    return receipt


def _deliver_in_child(endpoint: str, delivery: dict[str, Any]) -> None:
    """A worker's delivery in a process of its own (the test SIGKILLs it mid-request)."""
    with webhook_publisher(endpoint, timeout=HOLD_SECONDS * 2) as publisher:
        deliver(publisher, delivery)


@pytest.fixture()
def server() -> Iterator[PublisherServer]:
    with PublisherServer() as publisher_server:
        yield publisher_server


# The same key twice, or from another worker, publishes once with one receipt:
# tests/contracts/test_publisher_contract.py, for every publisher.


def test_a_failed_request_retried_with_its_key_publishes_once(server: PublisherServer) -> None:
    delivery = make_delivery("order-retry")
    server.fail_next(1, status=503)

    with webhook_publisher(server.url) as publisher:
        with pytest.raises(TransientError, match="503"):
            publisher.publish(**delivery)
        receipt = publisher.publish(**delivery)

    assert server.requests("order-retry") == 2
    assert server.effective_publishes("order-retry") == 1
    assert receipt["published_url"] == server.published_url("order-retry")


def test_a_rate_limit_reports_the_servers_retry_after(server: PublisherServer) -> None:
    server.fail_next(1, status=429, retry_after="3")

    with webhook_publisher(server.url) as publisher, pytest.raises(RateLimited) as caught:
        publisher.publish(**make_delivery("order-limited"))

    assert caught.value.retry_after == 3.0
    assert server.effective_publishes("order-limited") == 0


def test_a_key_reused_for_another_page_is_refused(server: PublisherServer) -> None:
    delivery = make_delivery("order-reused")

    with webhook_publisher(server.url) as publisher:
        publisher.publish(**delivery)
        with pytest.raises(PermanentError, match="different body"):
            publisher.publish(**{**delivery, "html_document": "<p>Another page</p>"})

    assert server.effective_publishes("order-reused") == 1


def test_a_worker_killed_after_the_post_does_not_publish_twice(
    service_env: dict[str, str], server: PublisherServer
) -> None:
    # Given a delivery whose POST has published, in a process now waiting for the response
    delivery = make_delivery("order-killed")
    server.hold(HOLD_SECONDS)
    context = multiprocessing.get_context("spawn")  # a fresh interpreter, as a worker is
    child = context.Process(target=_deliver_in_child, args=(server.url, delivery))
    child.start()
    wait_until(lambda: server.effective_publishes("order-killed") == 1 or not child.is_alive())
    assert child.is_alive(), f"the child ended before the kill (exit code {child.exitcode})"

    # When that process is killed before it commits the receipt
    os.kill(child.pid or 0, signal.SIGKILL)
    child.join(timeout=10)
    assert child.exitcode == -signal.SIGKILL
    with transaction() as session:
        assert remembered(session, delivery["key"]) is None  # the crash window, for real

    # And the pipeline retries the delivery with the same key
    with webhook_publisher(server.url) as publisher:
        receipt = deliver(publisher, delivery)
        again = deliver(publisher, delivery)

    # Then the publisher saw two requests but published once, and the receipt names that page
    assert server.requests("order-killed") == 2
    assert server.effective_publishes("order-killed") == 1
    assert receipt["published_url"] == server.published_url("order-killed")
    # And from now on the ledger answers: a third delivery does not even ask the publisher
    assert again == receipt
    assert server.requests("order-killed") == 2
