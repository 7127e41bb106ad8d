"""Faults inside one chunk run never spend an order's attempt unless the order itself failed.

These call the chunk runner in this process with stand-in handlers and
preparers (the only way to make them fail on purpose at an exact point); the
ledger, its leases and its conditional updates are the real ones.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import redis
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import select

from ledger.db import transaction
from ledger.models import Item
from pipeline.chunk import ChunkMessage
from pipeline.errors import RateLimited, TransientError
from tasks.chunk_runner import run_chunk
from tasks.submit import submit_batch
from tests.integration.helpers import make_orders
from tests.integration.stage_patch import patch_stage

pytestmark = pytest.mark.integration


@pytest.fixture()
def batch(service_env, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, list[int]]]:
    # Dispatch is stubbed: this test drives the chunk itself, no worker may take it.
    monkeypatch.setattr("tasks.submit._start", lambda *_: None)
    batch_id = f"fault-{uuid.uuid4().hex[:8]}"
    submit_batch(make_orders(3, batch_id), "it", "normal", {"batch_id": batch_id})
    with transaction() as session:
        ids = sorted(session.scalars(select(Item.id).where(Item.batch_id == batch_id)))
    yield batch_id, ids
    from tasks.control import cancel_batch

    cancel_batch(batch_id)


def _attempts(item_ids: list[int]) -> list[int]:
    with transaction() as session:
        query = select(Item.id, Item.attempts).where(Item.id.in_(item_ids))
        rows = {int(i): int(n) for i, n in session.execute(query)}
    return [int(rows[i]) for i in item_ids]


def _states(item_ids: list[int]) -> list[str]:
    with transaction() as session:
        query = select(Item.id, Item.state).where(Item.id.in_(item_ids))
        rows = {int(i): str(s) for i, s in session.execute(query)}
    return [str(rows[i]) for i in item_ids]


def _run(batch: tuple[str, list[int]], task_id: str = "task-x"):
    message = ChunkMessage(stage="preflight", batch_id=batch[0], item_ids=tuple(batch[1]))
    return run_chunk(message, f"{task_id}@test", reclaim=True)


class ByItem:
    """A preflight handler that raises per order id, in call order."""

    def __init__(self, errors: Sequence[BaseException | None]) -> None:
        self.errors, self.calls = errors, 0

    def __call__(self, order: Any, previous: Any, context: Any) -> dict[str, Any]:
        error = self.errors[self.calls]
        self.calls += 1
        if error is not None:
            raise error
        return {"prompt": {}, "checks": {}}


def test_a_redis_outage_while_taking_slots_spends_no_attempt(batch, monkeypatch) -> None:
    # Given Redis fails exactly when the chunk asks for its concurrency slots
    def outage(client, users, blockers=()):
        raise redis.ConnectionError("redis went away")

    monkeypatch.setattr("tasks.chunk_runner.take_slots", outage)

    # When the chunk runs, Celery's retry is raised...
    with pytest.raises(redis.ConnectionError):
        _run(batch)

    # ...and the orders are back in the pool with their attempts untouched.
    assert _attempts(batch[1]) == [0, 0, 0]
    with transaction() as session:
        owners = set(session.scalars(select(Item.lease_owner).where(Item.id.in_(batch[1]))))
    assert owners == {None}


def test_a_soft_time_limit_spends_no_attempt_of_orders_that_never_ran(batch, monkeypatch) -> None:
    # Given the time limit strikes while the first order runs
    handler = ByItem([SoftTimeLimitExceeded("soft limit"), None, None])
    patch_stage(monkeypatch, "preflight", handle=handler)

    report = _run(batch)

    # Then every order is retried, and only the one that was running paid an attempt.
    assert sorted(report.retry_ids) == batch[1]
    assert _attempts(batch[1]) == [1, 0, 0]
    assert handler.calls == 1


def test_a_rate_limit_spends_no_attempt_beside_a_transient_retry(batch, monkeypatch) -> None:
    # Given one order is rate limited, one fails transiently and one succeeds
    errors = [RateLimited("429", retry_after=5), TransientError("timeout"), None]
    patch_stage(monkeypatch, "preflight", handle=ByItem(errors))

    report = _run(batch)

    # Then only the transient failure spent its attempt
    assert sorted(report.retry_ids) == batch[1][:2]
    assert _attempts(batch[1][:2]) == [0, 1]


def test_a_soft_time_limit_while_preparing_fails_no_order(batch, monkeypatch) -> None:
    # Given the time limit strikes while the stage loads what its orders need
    def slow(batch_id, items):
        raise SoftTimeLimitExceeded("soft limit")

    patch_stage(monkeypatch, "preflight", prepare=slow)

    report = _run(batch)

    # Then no order failed and none paid an attempt: all are retried
    assert report.failed == []
    assert sorted(report.retry_ids) == batch[1]
    assert _states(batch[1]) == ["PREFLIGHT"] * 3
    assert _attempts(batch[1]) == [0, 0, 0]
