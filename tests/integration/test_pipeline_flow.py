"""A batch flows through all four stages on real Redis, PostgreSQL and worker processes."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from pipeline.manifest import ManifestError
from tests.integration.helpers import (
    finalize_events,
    item_states,
    ledger_counts,
    make_orders,
    receipts_per_item,
    wait_for_final,
)

pytestmark = pytest.mark.integration


def test_300_orders_over_three_priorities_end_once_each(workers, outbox: Path) -> None:
    # Given 300 orders split over high, normal and low batches
    from tasks import batch_status, submit_batch

    tag = uuid.uuid4().hex[:8]
    batch_ids = []
    for priority in ("low", "normal", "high"):
        orders = make_orders(100, f"{tag}-{priority}")
        result = submit_batch(orders, "it-project", priority, {"batch_id": f"{tag}-{priority}"})
        assert result["batch_id"] == f"{tag}-{priority}" and result["task_id"]
        batch_ids.append(result["batch_id"])

    # When the workers have processed them
    statuses = wait_for_final(batch_ids)

    # Then every order ended in exactly one terminal state, delivered ones once each
    assert set(statuses.values()) <= {"COMPLETED", "PARTIAL"}
    for batch_id in batch_ids:
        states = item_states(batch_id)
        assert len(states) == 100
        assert set(states.values()) <= {"DELIVERED", "FAILED"}
        delivered = sum(1 for state in states.values() if state == "DELIVERED")
        receipts = receipts_per_item(batch_id)
        assert len(receipts) == delivered and set(receipts.values()) == {1}
        assert len(list((outbox / batch_id).glob("*.receipt.json"))) == delivered
        assert finalize_events(batch_id) == 1
        status = batch_status(batch_id)
        assert status["completed"] == delivered
        assert status["completed"] + status["failed"] == 100
        assert status["progress_percentage"] == 100.0
        assert status["estimated_time_remaining"] == 0.0


def test_resubmitted_batch_id_returns_the_same_batch_and_creates_nothing(workers) -> None:
    from tasks import submit_batch

    batch_id = f"resubmit-{uuid.uuid4().hex[:8]}"
    orders = make_orders(5, batch_id)
    first = submit_batch(orders, "it-project", "normal", {"batch_id": batch_id})
    wait_for_final([batch_id])
    before = ledger_counts()

    second = submit_batch(orders, "it-project", "normal", {"batch_id": batch_id})

    assert second == first
    assert ledger_counts() == before


def test_reused_batch_id_with_other_content_is_a_conflict(workers) -> None:
    from tasks import BatchConflict, submit_batch

    batch_id = f"conflict-{uuid.uuid4().hex[:8]}"
    submit_batch(make_orders(3, batch_id), "it-project", "low", {"batch_id": batch_id})
    submitted = {"batches", "items"}  # workers write outputs and events meanwhile
    before = {table: n for table, n in ledger_counts().items() if table in submitted}
    with pytest.raises(BatchConflict, match="already exists with different content"):
        submit_batch(make_orders(4, batch_id), "it-project", "low", {"batch_id": batch_id})
    assert {table: n for table, n in ledger_counts().items() if table in submitted} == before
    wait_for_final([batch_id])  # leave no work running into the next test


def test_invalid_manifest_writes_nothing(service_env) -> None:
    from metrics.redis_client import redis_client
    from tasks import submit_batch

    orders = make_orders(10, "invalid")
    orders[7] = {**orders[7], "target_url": "not a url"}
    # Workers of earlier tests may still be writing outputs, events and their own
    # Redis keys: compare what a submission writes (batches, items, the batch's keys).
    submitted = {"batches", "items"}
    before = {table: n for table, n in ledger_counts().items() if table in submitted}

    with pytest.raises(ManifestError) as raised:
        submit_batch(orders, "it-project", "high", {"batch_id": "never-written"})

    assert raised.value.field == "documents[7].target_url"
    assert {table: n for table, n in ledger_counts().items() if table in submitted} == before
    assert not redis_client().keys("*never-written*")


def test_status_rebuilds_progress_when_redis_lost_it(workers) -> None:
    from metrics.keys import progress_key
    from metrics.redis_client import redis_client
    from tasks import batch_status, submit_batch

    batch_id = f"rebuild-{uuid.uuid4().hex[:8]}"
    submit_batch(make_orders(12, batch_id), "it-project", "high", {"batch_id": batch_id})
    wait_for_final([batch_id])
    expected = batch_status(batch_id)
    redis_client().delete(progress_key(batch_id))

    rebuilt = batch_status(batch_id)

    assert json.dumps(rebuilt["stages"]["delivery"]) == json.dumps(expected["stages"]["delivery"])
    assert rebuilt["completed"] == expected["completed"]
    assert redis_client().exists(progress_key(batch_id))


def test_get_batch_status_task_answers_through_a_worker(workers) -> None:
    from tasks import get_batch_status, submit_batch

    batch_id = f"task-status-{uuid.uuid4().hex[:8]}"
    submit_batch(make_orders(4, batch_id), "it-project", "normal", {"batch_id": batch_id})
    wait_for_final([batch_id])

    status = get_batch_status.delay(batch_id).get(timeout=30)

    assert status["batch_id"] == batch_id
    assert (status["status"], status["completed"], status["total"]) == ("completed", 4, 4)
