"""Completion as Celery sees it: the batch's task_id resolves, on_complete runs once."""

from __future__ import annotations

import threading
import uuid

import pytest
from celery.result import AsyncResult
from sqlalchemy import func, select

from celery_app import app
from ledger.db import transaction
from ledger.models import Batch, Event
from pipeline.manifest import ManifestError
from tasks import submit_batch
from tasks.completion import resend_completions
from tests.integration.helpers import ledger_counts, make_orders, wait_until

pytestmark = pytest.mark.integration

CALLBACK = "batchline.maintenance.log_completion"


def _calls(batch_id: str) -> int:
    with transaction() as session:
        query = select(func.count()).where(
            Event.batch_id == batch_id, Event.kind == "on_complete_called"
        )
        return int(session.scalar(query) or 0)


def test_task_id_resolves_to_the_final_status_and_on_complete_runs_once(workers, beat) -> None:
    # Given a batch that names a completion callback
    tag = f"done-{uuid.uuid4().hex[:6]}"
    handle = submit_batch(make_orders(3, tag), "tests", "high", {"on_complete": CALLBACK})

    # When it finishes, its task_id resolves to the final status, as a chord's would
    final = AsyncResult(handle["task_id"], app=app).get(timeout=60)
    assert final["batch_id"] == handle["batch_id"] and final["status"] == "completed"
    assert final["completed"] == 3

    # Then the callback ran once, and sweeps after it send nothing again
    wait_until(lambda: _calls(handle["batch_id"]) == 1, timeout=20)
    for _ in range(3):
        resend_completions()
    assert _calls(handle["batch_id"]) == 1


def test_a_finalize_whose_worker_died_before_sending_is_completed_once_by_the_sweeper(
    workers, beat
) -> None:
    # Given what a worker SIGKILLed right after its finalize committed leaves behind:
    # a finalized batch, its callback not sent, no result stored
    batch_id, task_id = f"killed-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    with transaction() as session:
        session.add(
            Batch(
                id=batch_id,
                project_uuid="tests",
                priority="normal",
                status="COMPLETED",
                options={"on_complete": CALLBACK},
                manifest_sha256="0" * 64,
                total_items=0,
                task_id=task_id,
                finalized_at=func.now(),
            )
        )

    # When sweeps run (beat's, and two more at once from here)
    threads = [threading.Thread(target=resend_completions) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then the result is stored and the callback runs exactly once
    assert AsyncResult(task_id, app=app).get(timeout=30)["status"] == "completed"
    wait_until(lambda: _calls(batch_id) == 1, timeout=20)
    for _ in range(3):
        resend_completions()
    assert _calls(batch_id) == 1


def test_on_complete_must_name_a_registered_task(service_env) -> None:
    counts = ledger_counts()
    with pytest.raises(ManifestError) as refused:
        submit_batch(make_orders(1, "cb"), "tests", "normal", {"on_complete": "no.such.task"})
    assert refused.value.field == "options.on_complete"
    assert ledger_counts() == counts
