"""warm_cache: what preflight reads is warm before a batch's first chunk runs.

High batches warm at submit; normal and low ones send the warm to
``batch.maintenance``. Profiles are cached, the history never: preflight must see
an order placed after the warm.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select

from celery_app import MAINTENANCE_QUEUE, route_task
from ledger.db import transaction
from ledger.items import ClaimedItem
from ledger.models import Item, StoredDocument
from metrics.keys import customer_cache_key, publisher_cache_key
from metrics.redis_client import redis_client
from pipeline.manifest import Submission, SubmitOptions, validate_submission
from tasks.preparers import prepare_preflight
from tasks.submit import should_warm, submit_batch
from tasks.warming import warm_cache
from tests.integration.helpers import make_orders

pytestmark = pytest.mark.integration


def _domains(orders: list[dict[str, object]]) -> set[str]:
    return {str(order["publisher_domain"]) for order in orders}


def _cache_keys(orders: list[dict[str, object]]) -> list[str]:
    customers = {str(order["customer_id"]) for order in orders}
    return [publisher_cache_key(d) for d in _domains(orders)] + [
        customer_cache_key(c) for c in customers
    ]


@pytest.fixture()
def unstarted(service_env, monkeypatch) -> Any:
    """Batches submitted here are never run (preflight would fill the caches itself)."""
    monkeypatch.setattr("tasks.stages.start_batch.apply_async", lambda **_: None)
    monkeypatch.setattr("tasks.feeder.feed", lambda lane, **_: 0)
    submitted: list[str] = []
    yield submitted
    from tasks.control import cancel_batch

    for batch_id in submitted:
        cancel_batch(batch_id)  # never started: leave nothing running


def _submit(unstarted: list[str], orders: Any, priority: str, batch_id: str) -> None:
    unstarted.append(batch_id)
    submit_batch(orders, "it", priority, {"batch_id": batch_id, "warm_cache": True})


def test_a_high_batch_is_warm_when_submit_returns(unstarted) -> None:
    batch_id = f"warm-{uuid.uuid4().hex[:8]}"
    orders = make_orders(12, batch_id)
    keys = _cache_keys(orders)
    redis_client().delete(*keys)

    _submit(unstarted, orders, "high", batch_id)

    assert all(redis_client().exists(key) for key in keys)


@pytest.mark.parametrize("priority", ["normal", "low"])
def test_a_normal_or_low_batch_sends_its_warm_to_the_maintenance_lane(
    unstarted, monkeypatch, priority: str
) -> None:
    # Given a submit whose warm task is caught on its way to the broker
    sent: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(
        "celery_app.app.send_task", lambda name, kwargs, **_: sent.append((name, kwargs))
    )
    batch_id = f"warm-{uuid.uuid4().hex[:8]}"
    orders = make_orders(12, batch_id)
    keys = _cache_keys(orders)
    redis_client().delete(*keys)

    # When it is submitted, Then nothing was warmed yet, one warm task went out ...
    _submit(unstarted, orders, priority, batch_id)
    assert not any(redis_client().exists(key) for key in keys)
    [(name, kwargs)] = sent
    assert route_task(name, (), kwargs, {}) == {"queue": MAINTENANCE_QUEUE}

    # ... and running it warms every profile the batch's preflight reads
    warm_cache(**kwargs)
    assert all(redis_client().exists(key) for key in keys)


def test_preflight_sees_an_order_placed_after_the_warm(unstarted) -> None:
    # Given a batch warmed at submit, and then a second batch with an order for
    # the same customer and target page, placed after the warm
    first_id, later_id = (f"warm-{uuid.uuid4().hex[:8]}" for _ in range(2))
    orders = make_orders(3, first_id)
    _submit(unstarted, orders, "high", first_id)
    later = dict(orders[0], order_id=f"{later_id}-again")
    _submit(unstarted, [later], "high", later_id)

    # When the first batch's preflight prepares its first order
    with transaction() as session:
        row = session.scalars(
            select(Item).where(Item.batch_id == first_id, Item.order_id == orders[0]["order_id"])
        ).one()
        document = session.get_one(StoredDocument, row.id).document
        claimed = ClaimedItem(item_id=row.id, document=dict(document), attempts=0)
    context = prepare_preflight(first_id, [claimed])[row.id]

    # Then its history holds the later order: the history is read at chunk time
    assert later["order_id"] in {past.order_id for past in context.history}
    assert context.customer is not None and context.publisher is not None


@pytest.mark.parametrize(
    ("warm_cache", "orders", "expected"),
    [(True, 1, True), (False, 50, False), (None, 4, False), (None, 5, True)],
)
def test_warming_follows_the_option_then_the_threshold(warm_cache, orders, expected) -> None:
    submission: Submission = validate_submission(
        make_orders(orders, "threshold"), "it", "normal", {}, max_items=100
    )
    submission = submission.model_copy(update={"options": SubmitOptions(warm_cache=warm_cache)})
    assert should_warm(submission, threshold=5) is expected
