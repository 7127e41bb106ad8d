"""Per-item retries against the real ledger: defer, reclaim by task id, refund, give up.

These call the chunk runner in this process with a stand-in handler (the only way
to make a real handler fail on purpose); the ledger, its leases and its
conditional updates are the real ones.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select, update

from ledger.db import transaction
from ledger.models import Item
from pipeline.chunk import ChunkMessage
from pipeline.errors import RateLimited, TransientError
from tasks.chunk_runner import run_chunk
from tasks.submit import submit_batch
from tests.integration.helpers import make_orders
from tests.integration.stage_patch import patch_stage

pytestmark = pytest.mark.integration


class FlakyPreflight:
    """Fails the first ``failures`` calls with ``error``, then succeeds."""

    def __init__(self, error: Exception, failures: int) -> None:
        self.error, self.failures, self.calls = error, failures, 0

    def __call__(self, order: Any, previous: Any, context: Any) -> dict[str, Any]:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return {"prompt": {}, "checks": {}}


@pytest.fixture()
def batch(service_env, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, list[int]]]:
    # Dispatch is stubbed: this test drives the chunk itself, no worker may take it.
    monkeypatch.setattr("tasks.submit._start", lambda *_: None)
    batch_id = f"retry-{uuid.uuid4().hex[:8]}"
    submit_batch(make_orders(1, batch_id), "it", "normal", {"batch_id": batch_id})
    with transaction() as session:
        ids = list(session.scalars(select(Item.id).where(Item.batch_id == batch_id)))
    yield batch_id, ids
    from tasks.control import cancel_batch

    cancel_batch(batch_id)


def _item(item_id: int) -> Item:
    with transaction() as session:
        item = session.get(Item, item_id)
        assert item is not None
        return item


def _run(batch: tuple[str, list[int]], task_id: str, max_retries: int = 3, reclaim: bool = True):
    # reclaim=True: the message is Celery's retry of this task (same id, retries > 0)
    message = ChunkMessage(
        stage="preflight", batch_id=batch[0], item_ids=tuple(batch[1]), max_retries=max_retries
    )
    return run_chunk(message, f"{task_id}@test", reclaim=reclaim)


def test_transient_failure_defers_to_the_retry_which_reclaims_it(batch, monkeypatch) -> None:
    flaky = FlakyPreflight(TransientError("timeout"), failures=1)
    patch_stage(monkeypatch, "preflight", handle=flaky)

    first = _run(batch, "task-a")
    item = _item(batch[1][0])
    assert first.retry_ids == batch[1] and first.retry_delay == 0.0
    assert (item.state, item.lease_owner) == ("PREFLIGHT", "task-a@retry")
    assert _run(batch, "task-b").claimed == 0  # another message cannot take it

    assert _run(batch, "task-a", reclaim=False).claimed == 0  # a plain copy of the message
    retried = _run(batch, "task-a")  # Celery's retry keeps the task id
    assert retried.succeeded == batch[1]
    assert (_item(batch[1][0]).state, _item(batch[1][0]).lease_owner) == ("WRITING", None)


def test_rate_limit_defers_without_spending_an_attempt(batch, monkeypatch) -> None:
    flaky = FlakyPreflight(RateLimited("429", retry_after=30), failures=5)
    patch_stage(monkeypatch, "preflight", handle=flaky)

    for _ in range(4):
        report = _run(batch, "task-r", max_retries=0)
        assert report.retry_ids == batch[1] and report.retry_delay == 30.0
    assert _item(batch[1][0]).attempts == 0


def test_item_fails_once_its_retry_budget_is_spent(batch, monkeypatch) -> None:
    flaky = FlakyPreflight(TransientError("timeout"), failures=10)
    patch_stage(monkeypatch, "preflight", handle=flaky)

    reports = [_run(batch, "task-f", max_retries=2) for _ in range(3)]

    assert [bool(r.retry_ids) for r in reports] == [True, True, False]
    assert reports[-1].failed == batch[1]
    item = _item(batch[1][0])
    assert (item.state, item.error_class) == ("FAILED", "TransientError")


def test_a_preparer_error_fails_each_item_for_an_operator(batch, monkeypatch) -> None:
    from pipeline.errors import DataError

    def broken(batch_id, items):
        raise DataError("stored publisher profile no longer validates")

    patch_stage(monkeypatch, "preflight", prepare=broken)

    report = _run(batch, "task-p")

    assert report.failed == batch[1]
    item = _item(batch[1][0])
    assert (item.state, item.error_class) == ("FAILED", "DataError")
    assert item.lease_owner is None  # nothing left leased for the sweeper to cycle


def _preflight_outputs(item_id: int) -> int:
    from sqlalchemy import func

    from ledger.models import StageOutput

    with transaction() as session:
        query = select(func.count()).where(
            StageOutput.item_id == item_id, StageOutput.stage == "preflight"
        )
        return int(session.scalar(query) or 0)


def test_a_due_retry_pooled_on_resume_runs_once_and_its_late_message_changes_nothing(
    batch, monkeypatch
) -> None:
    from ledger.pool import pool_due_retries
    from pipeline.settings import get_settings

    lease = get_settings().batch_lease_seconds
    item_id = batch[1][0]
    flaky = FlakyPreflight(RateLimited("429", retry_after=0), failures=1)
    patch_stage(monkeypatch, "preflight", handle=flaky)

    # Given an order a rate limit deferred to task-r's retry, which is due now
    # (as when the retry message came while halted and claimed nothing)
    assert _run(batch, "task-r").retry_ids == batch[1]
    assert _item(item_id).lease_owner == "task-r@retry"

    # When resuming pools it, and a new chunk runs it
    with transaction() as session:
        pooled = pool_due_retries(session, lease_seconds=lease, batch_id=batch[0])
    pooled_item = _item(item_id)
    fresh = _run(batch, "task-n", reclaim=False)
    # ... and then task-r's retry message still arrives
    late = _run(batch, "task-r")

    # Then the order ran once: the late retry claimed nothing and changed nothing
    assert pooled == 1
    assert (pooled_item.lease_owner, pooled_item.lease_expires_at) == (None, None)
    assert pooled_item.attempts == 0  # the rate limit's attempt stays refunded
    assert fresh.succeeded == batch[1]
    assert late.claimed == 0
    item = _item(item_id)
    assert (item.state, item.lease_owner) == ("WRITING", None)
    assert _preflight_outputs(item_id) == 1


def test_resuming_leaves_a_retry_not_yet_due_to_its_own_message(batch) -> None:
    from ledger.items import defer_items
    from ledger.pool import pool_due_retries
    from pipeline.settings import get_settings

    lease = get_settings().batch_lease_seconds
    retry_id = batch[1][0]
    # Given the order held by a chunk and deferred to its retry, due in a minute
    with transaction() as session:
        session.execute(
            update(Item)
            .where(Item.id == retry_id)
            .values(lease_owner="task-w@test", state="PREFLIGHT")
        )
        defer_items(
            session, [retry_id], owner="task-w@test", hold_seconds=lease + 60, refund_attempt=True
        )

    # When resuming looks for due retries
    with transaction() as session:
        pooled = pool_due_retries(session, lease_seconds=lease, batch_id=batch[0])

    # Then it waits for its own retry message, as before the halt
    assert pooled == 0
    assert _item(retry_id).lease_owner == "task-w@retry"
