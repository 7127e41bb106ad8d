"""``OrderIntake`` with a real ledger and real workers: single orders become batches.

Each test uses a project of its own; ``flush()`` submits every project's pending
orders, which is harmless to the others (their orders are valid).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import uuid
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from ledger import intake as intake_rows
from ledger.db import transaction
from ledger.models import Batch, IntakeOrder, Item
from pipeline.manifest import ManifestError
from pipeline.settings import get_settings
from tasks.intake import IntakeConflict, OrderIntake
from tests.integration.helpers import item_states, make_orders, wait_for_final, wait_until

pytestmark = pytest.mark.integration

#: Large enough that only the test decides when a group flushes.
NEVER = 3600.0


def _project(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def _batch_orders(batch_id: str) -> list[str]:
    with transaction() as session:
        query = select(Item.order_id).where(Item.batch_id == batch_id).order_by(Item.position)
        return list(session.scalars(query))


def _batch_exists(batch_id: str) -> bool:
    with transaction() as session:
        return session.get(Batch, batch_id) is not None


def test_a_group_flushes_at_max_orders_and_orders_are_found_before_and_after(
    workers: Any,
) -> None:
    project = _project("intake-size")
    orders = make_orders(3, project)
    intake = OrderIntake(max_orders=3, max_wait_seconds=NEVER, background=False)
    # When two orders are accepted, they wait, and can be looked up by id
    first = intake.submit(orders[0], project, "high")
    intake.submit(orders[1], project, "high")
    assert first["state"] == "pending" and first["batch_id"] is None
    assert intake.lookup(orders[0]["order_id"])[0]["state"] == "pending"
    assert intake.stats()["pending"] >= 2
    # When the third arrives, the group becomes one batch of the three, in order
    third = intake.submit(orders[2], project, "high")
    assert third["state"] == "flushed"
    batch_id = third["batch_id"]
    assert _batch_orders(batch_id) == [order["order_id"] for order in orders]
    assert intake.lookup_one(project, orders[0]["order_id"])["batch_id"] == batch_id
    assert intake.stats()["flushed_batches"] == 1
    # Then the batch runs to the end like any other
    assert wait_for_final([batch_id]) == {batch_id: "COMPLETED"}


def test_an_invalid_order_is_refused_alone(workers: Any) -> None:
    project = _project("intake-refused")
    good, bad, other = make_orders(3, project)
    intake = OrderIntake(max_orders=2, max_wait_seconds=NEVER, background=False)
    intake.submit(good, project, "normal")
    with pytest.raises(ManifestError) as refused:
        intake.submit({**bad, "language": "english"}, project, "normal")
    # Then the error names the field as submit_batch's does, under ``document``
    assert refused.value.field == "document.language"
    with pytest.raises(ManifestError) as no_project:
        intake.submit(other, "", "normal")
    assert no_project.value.field == "project_uuid"
    assert intake.lookup(bad["order_id"]) == []
    # And the valid orders flush together without it
    record = intake.submit(other, project, "normal")
    assert record["state"] == "flushed"
    assert _batch_orders(record["batch_id"]) == [good["order_id"], other["order_id"]]
    assert intake.stats()["refused_orders"] == 2


def test_a_resend_is_recognised_and_other_content_conflicts(service_env: Any) -> None:
    project = _project("intake-resend")
    (order,) = make_orders(1, project)
    intake = OrderIntake(max_orders=10, max_wait_seconds=NEVER, background=False)
    assert intake.submit(order, project, "low")["created"] is True
    assert intake.submit(order, project, "low")["created"] is False
    with pytest.raises(IntakeConflict) as conflict:
        intake.submit({**order, "topic": "something else"}, project, "low")
    assert conflict.value.field == "document.order_id"
    with pytest.raises(IntakeConflict):
        intake.submit(order, project, "high")
    assert [row["order_id"] for row in intake.lookup(order["order_id"])] == [order["order_id"]]
    intake.flush()


def test_the_background_thread_flushes_a_group_by_age(
    workers: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = _project("intake-age")
    (order,) = make_orders(1, project)
    # The thread looks for due groups every 0.2 s, not every 5 s (the default)
    monkeypatch.setenv("INTAKE_FLUSH_INTERVAL_SECONDS", "0.2")
    get_settings.cache_clear()
    intake = OrderIntake(max_orders=100, max_wait_seconds=1, background=True)
    try:
        assert intake.submit(order, project, "high")["state"] == "pending"
        # No further order arrives: the thread flushes it once it is a second old
        wait_until(
            lambda: intake.lookup_one(project, order["order_id"])["state"] == "flushed",
            timeout=90,
            interval=0.2,
        )
    finally:
        intake.close()
        monkeypatch.undo()
        get_settings.cache_clear()
    batch_id = intake.lookup_one(project, order["order_id"])["batch_id"]
    assert wait_for_final([batch_id]) == {batch_id: "COMPLETED"}


_ACCEPT_THEN_HANG = """
import json, sys, time
from tasks.intake import OrderIntake
intake = OrderIntake(max_orders=1000, max_wait_seconds=3600, background=False)
for order in json.loads(sys.argv[2]):
    intake.submit(order, sys.argv[1], "high")
print("accepted", flush=True)
time.sleep(3600)
"""


def test_orders_accepted_by_a_killed_intake_are_flushed_by_the_next(
    service_env: dict[str, str], workers: Any
) -> None:
    import json

    project = _project("intake-crash")
    orders = make_orders(4, project)
    # Given an intake process that acknowledged four orders and never flushed them
    child = subprocess.Popen(
        [sys.executable, "-c", _ACCEPT_THEN_HANG, project, json.dumps(orders)],
        env={**os.environ, **service_env},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "accepted"
    finally:
        # When it is killed outright
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    # Then the next intake finds every order and flushes them into one batch
    intake = OrderIntake(background=False)
    intake.flush()
    batch_ids = {intake.lookup_one(project, order["order_id"])["batch_id"] for order in orders}
    assert len(batch_ids) == 1
    (batch_id,) = batch_ids
    assert _batch_orders(batch_id) == [order["order_id"] for order in orders]
    assert wait_for_final([batch_id]) == {batch_id: "COMPLETED"}
    assert set(item_states(batch_id).values()) == {"DELIVERED"}


def test_a_flush_interrupted_after_assigning_is_finished_under_the_same_id(
    workers: Any,
) -> None:
    project = _project("intake-assigned")
    orders = make_orders(2, project)
    intake = OrderIntake(max_orders=10, max_wait_seconds=NEVER, background=False)
    for order in orders:
        intake.submit(order, project, "normal")
    # Given a flush that assigned a batch id and died before submitting it
    with transaction() as session:
        batch_id = intake_rows.assign_group(session, project, "normal", 10)
    assert batch_id is not None and not _batch_exists(batch_id)
    assert intake.lookup_one(project, orders[0]["order_id"])["state"] == "assigned"
    # When any intake flushes, that batch is submitted under the id it was given
    assert batch_id in OrderIntake(background=False).flush_due()
    assert _batch_orders(batch_id) == [order["order_id"] for order in orders]
    assert intake.lookup_one(project, orders[1]["order_id"])["state"] == "flushed"
    assert wait_for_final([batch_id]) == {batch_id: "COMPLETED"}


def test_two_intakes_flushing_at_once_put_each_order_in_one_batch(workers: Any) -> None:
    project = _project("intake-race")
    orders = make_orders(40, project)
    first = OrderIntake(max_orders=5, max_wait_seconds=NEVER, background=False)
    second = OrderIntake(max_orders=5, max_wait_seconds=NEVER, background=False)
    # Accept without flushing by size: write the rows as the intake does
    with transaction() as session:
        for order in orders:
            intake_rows.accept_order(session, project_uuid=project, priority="low", document=order)
    flushed: list[list[str]] = []
    threads = [
        threading.Thread(target=lambda i=i: flushed.append(i.flush())) for i in (first, second)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    batch_ids = sorted({batch_id for ids in flushed for batch_id in ids})
    mine = [b for b in batch_ids if _batch_orders(b) and _batch_orders(b)[0].startswith(project)]
    assert len(mine) == 8
    seen = Counter(order_id for batch_id in mine for order_id in _batch_orders(batch_id))
    assert seen == Counter(order["order_id"] for order in orders)
    assert set(wait_for_final(mine).values()) == {"COMPLETED"}


def _accepted_seconds_ago(project: str, seconds: float) -> None:
    """Date a project's intake orders back by ``seconds`` (by the database's clock)."""
    with transaction() as session:
        session.execute(
            update(IntakeOrder)
            .where(IntakeOrder.project_uuid == project)
            .values(accepted_at=func.now() - timedelta(seconds=seconds))
        )


def test_beat_flushes_a_group_due_by_age_when_no_intake_runs(
    service_env: dict[str, str], workers: Any, tmp_path: Any
) -> None:
    from cli.workers import spawn_beat, stop_workers

    project = _project("intake-beat")
    (order,) = make_orders(1, project)
    # Given an order accepted by an intake that is gone (no thread, never closed)
    OrderIntake(max_orders=100, max_wait_seconds=NEVER, background=False).submit(
        order, project, "low"
    )
    reader = OrderIntake(background=False)
    assert reader.lookup_one(project, order["order_id"])["state"] == "pending"
    # ... longer ago than the workers' INTAKE_MAX_WAIT_SECONDS (the test's own settings,
    # as the session's workers share them): dated back rather than waited for (30 s)
    _accepted_seconds_ago(project, get_settings().intake_max_wait_seconds + 1)
    # When beat runs its flush_intake entry every second
    beat = spawn_beat(
        env={**service_env, "INTAKE_FLUSH_INTERVAL_SECONDS": "1"},
        log_path=tmp_path / "beat.log",
        schedule_path=tmp_path / "schedule",
    )
    try:
        # Then the order is flushed into a batch without anyone calling flush()
        wait_until(
            lambda: reader.lookup_one(project, order["order_id"])["state"] == "flushed",
            timeout=150,
            interval=0.5,
        )
    finally:
        stop_workers([beat])
    batch_id = reader.lookup_one(project, order["order_id"])["batch_id"]
    assert wait_for_final([batch_id]) == {batch_id: "COMPLETED"}


def test_a_flush_by_size_sends_full_batches_and_keeps_the_rest_waiting(workers: Any) -> None:
    project = _project("intake-full")
    orders = make_orders(5, project)
    # Given five pending orders of a group of two (written as the intake writes them)
    with transaction() as session:
        for order in orders:
            intake_rows.accept_order(session, project_uuid=project, priority="low", document=order)
    intake = OrderIntake(max_orders=2, max_wait_seconds=NEVER, background=False)
    # When the due groups are flushed
    intake.flush_due()
    # Then two full batches left, in order, and the fifth order still waits
    states = [intake.lookup_one(project, order["order_id"]) for order in orders]
    assert [state["state"] for state in states] == ["flushed"] * 4 + ["pending"]
    batch_ids = [states[0]["batch_id"], states[2]["batch_id"]]
    assert [_batch_orders(batch_id) for batch_id in batch_ids] == [
        [orders[0]["order_id"], orders[1]["order_id"]],
        [orders[2]["order_id"], orders[3]["order_id"]],
    ]
    assert intake.flush() and intake.lookup_one(project, orders[4]["order_id"])["batch_id"]
    assert set(wait_for_final(batch_ids).values()) == {"COMPLETED"}
