"""``batchline pause | resume | cancel | halt | resume-all | sweep`` as an operator runs them."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.test_cli import batchline
from tests.integration.helpers import (
    finalize_events,
    item_states,
    make_orders,
    stage_output_count,
    wait_for_final,
)

pytestmark = pytest.mark.e2e


def test_pause_resume_and_cancel_from_the_command_line(
    workers, service_env, halt: Callable[[str], object]
) -> None:
    from tasks import submit_batch
    from tasks.control import resume_all

    # Given two batches submitted while the system is halted, so neither has moved
    first, second = (f"cli-ctl-{uuid.uuid4().hex[:6]}-{n}" for n in (1, 2))
    halt("test set-up")
    submit_batch(make_orders(30, first), "cli", "low", {"batch_id": first})
    submit_batch(make_orders(30, second), "cli", "low", {"batch_id": second})

    # When one is paused and the other cancelled from the command line
    paused = batchline("pause", first, env=service_env)
    again = batchline("pause", first, env=service_env)
    cancelled = batchline("cancel", second, env=service_env)
    resume_all()

    # Then the paused batch stays still after the halt lifts, the cancelled one ended
    assert paused.returncode == 0, paused.stderr
    assert json.loads(paused.stdout)["status"] == "paused"
    assert again.returncode == 1 and "is not running" in again.stderr
    assert cancelled.returncode == 0, cancelled.stderr
    assert json.loads(cancelled.stdout) == {"batch_id": second, "cancelled": 30, "finalized": True}
    time.sleep(1.5)
    assert stage_output_count(first) == 0

    # And resuming it delivers every order, each batch finalized once
    resumed = batchline("resume", first, env=service_env)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["redispatched"] == 30
    assert wait_for_final([first, second]) == {first: "COMPLETED", second: "CANCELLED"}
    assert set(item_states(first).values()) == {"DELIVERED"}
    assert set(item_states(second).values()) == {"CANCELLED"}
    assert finalize_events(first) == finalize_events(second) == 1


# The halt fixture resumes in finally should the command line's resume-all never run.
@pytest.mark.usefixtures("halt")
def test_halt_and_resume_all_from_the_command_line(workers, service_env, tmp_path: Path) -> None:
    halted = batchline("halt", "--reason", "inspecting a report", env=service_env)
    assert halted.returncode == 0, halted.stderr
    batch_id = f"cli-halt-{uuid.uuid4().hex[:6]}"
    manifest = tmp_path / "orders.json"
    manifest.write_text(json.dumps(make_orders(8, batch_id)))
    try:
        submitted = batchline("submit", str(manifest), "--batch-id", batch_id, env=service_env)
        assert submitted.returncode == 0, submitted.stderr
        time.sleep(1.5)  # long enough for idle workers to take the chunks, were they allowed
        assert stage_output_count(batch_id) == 0
    finally:
        resumed = batchline("resume-all", env=service_env)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["resumed"] is True
    assert wait_for_final([batch_id]) == {batch_id: "COMPLETED"}


def test_sweep_once_prints_its_report(service_env) -> None:
    result = batchline("sweep", env=service_env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert {"redispatched", "finalized", "idle_lanes", "halted"} <= set(report)


def test_delete_from_the_command_line(workers, service_env, halt: Callable[[str], object]) -> None:
    from tasks import submit_batch
    from tasks.control import resume_all

    # Given a batch held open by a halt
    batch_id = f"cli-del-{uuid.uuid4().hex[:6]}"
    halt("test set-up")
    submit_batch(make_orders(3, batch_id), "cli", "high", {"batch_id": batch_id})
    # Then deleting it is refused, and nothing goes
    refused = batchline("delete", batch_id, env=service_env)
    assert refused.returncode == 1 and "still open" in refused.stderr
    assert len(item_states(batch_id)) == 3
    # When it has ended, it is deleted, and a second delete finds nothing
    resume_all()
    assert wait_for_final([batch_id]) == {batch_id: "COMPLETED"}
    deleted = batchline("delete", batch_id, env=service_env)
    assert deleted.returncode == 0, deleted.stderr
    report = json.loads(deleted.stdout)
    assert report["deleted"]["orders"] == 3 and report["receipts_kept"] == 3
    assert item_states(batch_id) == {}
    again = batchline("delete", batch_id, env=service_env)
    assert again.returncode == 1 and "no batch" in again.stderr
