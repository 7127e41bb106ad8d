"""Completion never depends on a message: the sweeper re-sends lost work from the ledger."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from tests.integration.helpers import (
    assert_each_delivered_once,
    finalize_events,
    item_states,
    make_orders,
    stage_output_count,
    wait_for_final,
    wait_until,
)

pytestmark = pytest.mark.integration


def test_batch_finishes_after_redis_loses_every_message_and_hash(
    workers, beat, lose_redis: Callable[[], None]
) -> None:
    from metrics.keys import progress_key
    from metrics.redis_client import redis_client
    from tasks import batch_status, submit_batch

    # Given a batch in flight
    batch_id = f"lost-{uuid.uuid4().hex[:8]}"
    submit_batch(make_orders(150, batch_id), "it", "low", {"batch_id": batch_id})
    wait_until(lambda: stage_output_count(batch_id) > 20)

    # When Redis loses everything: queued and unacked messages, progress, locks
    lose_redis()

    # Then the sweeper sends the waiting work again and the batch ends normally
    assert wait_for_final([batch_id], timeout=90) == {batch_id: "COMPLETED"}
    assert set(item_states(batch_id).values()) == {"DELIVERED"}
    assert_each_delivered_once(batch_id)
    assert finalize_events(batch_id) == 1
    assert redis_client().exists(progress_key(batch_id))
    assert batch_status(batch_id)["completed"] == 150


def test_sweep_finalizes_a_batch_whose_finalize_was_missed(workers) -> None:
    from sqlalchemy import delete, update

    from ledger.db import transaction
    from ledger.models import Batch, Event
    from recovery.sweeper import sweep
    from tasks import submit_batch

    batch_id = f"missed-{uuid.uuid4().hex[:8]}"
    submit_batch(make_orders(5, batch_id), "it", "high", {"batch_id": batch_id})
    wait_for_final([batch_id])
    # Simulate a worker that died right after the last commit, before finalizing.
    with transaction() as session:
        session.execute(
            update(Batch).where(Batch.id == batch_id).values(status="RUNNING", finalized_at=None)
        )
        session.execute(delete(Event).where(Event.batch_id == batch_id, Event.kind == "finalized"))

    report = sweep()

    assert batch_id in report.finalized
    assert finalize_events(batch_id) == 1
