"""warm_cache: a batch's publisher profiles are in the cache before its first chunk runs."""

from __future__ import annotations

import uuid

import pytest

from metrics.keys import publisher_cache_key
from metrics.redis_client import redis_client
from pipeline.manifest import Submission, SubmitOptions, validate_submission
from tasks.submit import should_warm, submit_batch
from tests.integration.helpers import make_orders

pytestmark = pytest.mark.integration


def _domains(orders: list[dict[str, object]]) -> set[str]:
    return {str(order["publisher_domain"]) for order in orders}


def test_warm_cache_loads_every_publisher_of_the_batch(service_env, monkeypatch) -> None:
    # No worker may run the batch: preflight would fill the cache itself.
    monkeypatch.setattr("tasks.stages.start_batch.apply_async", lambda **_: None)
    batch_id = f"warm-{uuid.uuid4().hex[:8]}"
    orders = make_orders(12, batch_id)
    keys = [publisher_cache_key(domain) for domain in _domains(orders)]
    redis_client().delete(*keys)

    submit_batch(orders, "it", "normal", {"batch_id": batch_id, "warm_cache": True})

    assert all(redis_client().exists(key) for key in keys)
    from tasks.control import cancel_batch

    cancel_batch(batch_id)  # it was never started: leave nothing running


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
