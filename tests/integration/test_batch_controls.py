"""Pause, resume, cancel, halt and resume-all against real workers."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest
from sqlalchemy import func, select, update

from ledger.db import transaction
from ledger.models import Event, Item, StageOutput, StoredDocument
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


def test_paused_batch_claims_nothing_until_resumed(workers) -> None:
    from tasks import submit_batch
    from tasks.control import pause_batch, resume_batch

    # Given a running batch that is paused as soon as it starts
    batch_id = f"pause-{uuid.uuid4().hex[:8]}"
    submit_batch(make_orders(80, batch_id), "it", "low", {"batch_id": batch_id})
    wait_until(lambda: stage_output_count(batch_id) > 0)
    pause_batch(batch_id)

    # When the chunks already running have finished
    time.sleep(1.0)
    paused_at = stage_output_count(batch_id)
    time.sleep(1.5)

    # Then nothing more happened, and after resuming every order is delivered once
    assert stage_output_count(batch_id) == paused_at
    assert paused_at < 80 * 4
    resume_batch(batch_id)
    assert wait_for_final([batch_id]) == {batch_id: "COMPLETED"}
    assert set(item_states(batch_id).values()) == {"DELIVERED"}
    assert_each_delivered_once(batch_id)
    assert finalize_events(batch_id) == 1


def test_cancelled_batch_ends_waiting_orders_and_finalizes_once(workers, beat) -> None:
    from tasks import batch_status, submit_batch
    from tasks.control import cancel_batch

    batch_id = f"cancel-{uuid.uuid4().hex[:8]}"
    submit_batch(make_orders(120, batch_id), "it", "low", {"batch_id": batch_id})
    wait_until(lambda: stage_output_count(batch_id) > 0)

    cancel_batch(batch_id)

    assert wait_for_final([batch_id], timeout=60) == {batch_id: "CANCELLED"}
    states = item_states(batch_id)
    assert set(states.values()) <= {"DELIVERED", "CANCELLED"}
    assert "CANCELLED" in states.values()
    assert_each_delivered_once(batch_id)
    assert finalize_events(batch_id) == 1
    status = batch_status(batch_id)
    assert status["status"] == "cancelled"
    assert status["cancelled"] == sum(state == "CANCELLED" for state in states.values())


def test_critical_error_halts_claiming_everywhere_and_resume_all_loses_nothing(
    workers, halt: Callable[[str], object]
) -> None:
    from tasks import submit_batch
    from tasks.control import resume_all

    # Given a batch submitted while halted, with one stored order damaged in the ledger
    halt("test set-up")
    batch_id = f"critical-{uuid.uuid4().hex[:8]}"
    orders = make_orders(60, batch_id)
    submit_batch(orders, "it", "high", {"batch_id": batch_id})
    damaged = orders[25]["order_id"]
    _set_document(batch_id, damaged, {"damaged": True})

    # When work resumes and a worker meets the damaged order
    resume_all()
    halted_at = _wait_for_event("halted", after_kind="resumed_all")

    # Then claiming stops everywhere within a second (running chunks may finish)
    time.sleep(1.5)
    last_output = _last_output_at(batch_id)
    assert (last_output - halted_at).total_seconds() < 1.0
    count = stage_output_count(batch_id)
    time.sleep(1.0)
    assert stage_output_count(batch_id) == count
    assert item_states(batch_id)[damaged] != "FAILED"

    # And after repair and resume-all every order is delivered once
    _set_document(batch_id, damaged, orders[25])
    resume_all()
    assert wait_for_final([batch_id]) == {batch_id: "COMPLETED"}
    assert set(item_states(batch_id).values()) == {"DELIVERED"}
    assert_each_delivered_once(batch_id)


def _set_document(batch_id: str, order_id: str, document: dict[str, object]) -> None:
    with transaction() as session:
        item_id = select(Item.id).where(Item.batch_id == batch_id, Item.order_id == order_id)
        session.execute(
            update(StoredDocument)
            .where(StoredDocument.item_id == item_id.scalar_subquery())
            .values(document=document)
        )


def _wait_for_event(kind: str, after_kind: str):
    def latest(name: str):
        with transaction() as session:
            return session.scalar(select(func.max(Event.created_at)).where(Event.kind == name))

    wait_until(lambda: (latest(kind) or 0) and latest(kind) > latest(after_kind), timeout=30)
    return latest(kind)


def _last_output_at(batch_id: str):
    with transaction() as session:
        return session.scalar(
            select(func.max(StageOutput.created_at))
            .join(Item, Item.id == StageOutput.item_id)
            .where(Item.batch_id == batch_id)
        )
