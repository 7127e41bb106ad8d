"""One bad order never fails or blocks the rest of its chunk."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from ledger.db import transaction
from ledger.models import Item, StageOutput
from tests.integration.helpers import item_states, make_orders, wait_for_final

pytestmark = pytest.mark.integration


def test_orders_failing_preflight_do_not_sink_their_chunk(workers) -> None:
    # Given a batch in which two orders in the first chunk link to the publisher itself
    from tasks import batch_status, submit_batch

    batch_id = f"poison-{uuid.uuid4().hex[:8]}"
    orders = make_orders(10, batch_id)
    for index in (2, 7):
        orders[index] = {
            **orders[index],
            "target_url": f"https://{orders[index]['publisher_domain']}/self",
        }

    # When it runs
    submit_batch(orders, "it-project", "high", {"batch_id": batch_id})
    statuses = wait_for_final([batch_id])

    # Then only those two failed, with the reason stored, and the batch is PARTIAL
    states = item_states(batch_id)
    failed = {order for order, state in states.items() if state == "FAILED"}
    assert failed == {orders[2]["order_id"], orders[7]["order_id"]}
    assert sum(state == "DELIVERED" for state in states.values()) == 8
    assert statuses[batch_id] == "PARTIAL"
    with transaction() as session:
        reasons = set(
            session.execute(
                select(Item.error_class, StageOutput.stage, StageOutput.ok)
                .join(StageOutput, StageOutput.item_id == Item.id)
                .where(Item.batch_id == batch_id, Item.state == "FAILED")
            )
        )
    assert reasons == {("InvalidInput", "preflight", False)}
    status = batch_status(batch_id)
    assert (status["completed"], status["failed"], status["success_rate"]) == (8, 2, 80.0)
    assert status["stages"]["preflight"] == {"done": 8, "failed": 2}


def test_failures_are_counted_by_class_and_survive_a_progress_rebuild(workers) -> None:
    from datetime import UTC, datetime

    from metrics.keys import error_bucket_key, progress_key
    from metrics.redis_client import redis_client
    from tasks import batch_status, submit_batch

    batch_id = f"buckets-{uuid.uuid4().hex[:8]}"
    orders = make_orders(6, batch_id)
    orders[0] = {**orders[0], "target_url": f"https://{orders[0]['publisher_domain']}/self"}
    bucket = error_bucket_key(datetime.now(UTC))
    before = int(redis_client().hget(bucket, "InvalidInput") or 0)

    submit_batch(orders, "it-project", "normal", {"batch_id": batch_id})
    wait_for_final([batch_id])

    assert int(redis_client().hget(bucket, "InvalidInput") or 0) - before >= 1
    redis_client().delete(progress_key(batch_id))
    rebuilt = batch_status(batch_id)
    assert rebuilt["stages"]["preflight"] == {"done": 5, "failed": 1}
    assert (rebuilt["completed"], rebuilt["failed"]) == (5, 1)
