"""``batchline monitor``, ``batches`` and ``status`` as an operator runs them, on a real state.

Batches are submitted to the session's ledger and Redis and run by its real
workers; a halt holds them still where a figure must be known exactly.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cli.sample_orders import orders_built_to_fail
from tests.e2e.test_cli import batchline
from tests.integration.helpers import make_orders, wait_for_final

pytestmark = pytest.mark.e2e

#: Wide enough that no id or reason is cut in a table.
WIDE = {"COLUMNS": "220"}


def _json(*args: str, env: dict[str, str]) -> Any:
    shown = batchline(*args, env=env)
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)


def test_a_halt_and_its_waiting_batches_show_in_monitor_batches_and_status(
    workers: Any, service_env: dict[str, str], halt: Callable[[str], object], tmp_path: Path
) -> None:
    from tasks import submit_batch
    from tasks.control import resume_all
    from tasks.status import get_batch_status

    # Given the system halted, then three batches submitted: nothing of them can move
    tag = f"mon-{uuid.uuid4().hex[:6]}"
    sizes = {"high": 5, "normal": 4, "low": 3}
    ids = {priority: f"{tag}-{priority}" for priority in sizes}
    halt("monitor e2e")
    for priority in ("low", "normal"):
        orders = make_orders(sizes[priority], ids[priority])
        submit_batch(orders, "mon", priority, {"batch_id": ids[priority]})
    manifest = tmp_path / "orders.json"
    manifest.write_text(json.dumps(make_orders(sizes["high"], ids["high"])))
    submitted = batchline(
        "submit", str(manifest), "--priority", "high", "--batch-id", ids["high"], env=service_env
    )

    # Then submit accepted the batch and warned that it waits for the halt to lift
    assert submitted.returncode == 0, submitted.stderr
    assert json.loads(submitted.stdout)["batch_id"] == ids["high"]
    assert "warning: the system is halted (monitor e2e)" in submitted.stderr

    # And monitor --json has the halt, the lanes' pool and each batch's exact figures
    snapshot = _json("monitor", "--json", "--page-size", "500", env=service_env)
    assert snapshot["halted"] is True and snapshot["halt"]["reason"] == "monitor e2e"
    shown = {b["batch_id"]: b for b in snapshot["batches"] if b["batch_id"].startswith(tag)}
    assert set(shown) == set(ids.values())
    for priority, batch_id in ids.items():
        batch = shown[batch_id]
        assert (batch["priority"], batch["status"], batch["total"]) == (
            priority,
            "running",
            sizes[priority],
        )
        assert (batch["completed"], batch["failed"], batch["progress_percentage"]) == (0, 0, 0.0)
        assert (batch["velocity"], batch["eta_human"]) == (0.0, "unknown")
        assert snapshot["lanes"][priority]["pooled"] >= sizes[priority]
        assert snapshot["lanes"][priority]["oldest_wait_seconds"] >= 0.0
    order = [b["batch_id"] for b in snapshot["batches"] if b["batch_id"] in shown]
    assert order == [ids["high"], ids["normal"], ids["low"]]  # high priority first
    assert snapshot["open_batches"] >= 3
    assert snapshot["slots"]["global"]["limit"] > 0
    assert "writer" in snapshot["rate_limits"]

    # And monitor --once draws the same frame for people
    frame = batchline("monitor", "--once", "--page-size", "500", env={**service_env, **WIDE})
    assert frame.returncode == 0, frame.stderr
    for text in ("HALTED", "monitor e2e", "lanes", "open batches", "concurrency slots", "errors"):
        assert text in frame.stdout
    for batch_id in ids.values():
        assert batch_id in frame.stdout
    assert "None" not in frame.stdout

    # And batches and status say so too
    listed = _json("batches", "--limit", "500", "--json", env=service_env)
    assert listed["halted"] is True and listed["halt"]["reason"] == "monitor e2e"
    newest_first = [b["batch_id"] for b in listed["batches"] if b["batch_id"] in shown]
    assert newest_first == [ids["high"], ids["normal"], ids["low"]]  # submitted low first
    status = _json("status", ids["high"], "--json", env=service_env)
    assert (status["halted"], status["halt_reason"]) == (True, "monitor e2e")
    assert (status["remaining"], status["velocity"], status["eta_human"]) == (5, 0.0, "unknown")
    assert status["in_stage"]["preflight"] == 5
    answered = get_batch_status.delay(ids["low"]).get(timeout=60)  # the Celery task form
    assert (answered["halted"], answered["halt_reason"]) == (True, "monitor e2e")
    table = batchline("status", ids["high"], env={**service_env, **WIDE})
    assert "HALTED" in table.stdout and "monitor e2e" in table.stdout
    assert "None" not in table.stdout

    # When the halt is lifted the batches run to their end and leave the open list
    resume_all()
    wait_for_final(list(ids.values()))
    after = _json("monitor", "--json", "--page-size", "500", env=service_env)
    assert after["halted"] is False and after["halt"] is None
    assert not {b["batch_id"] for b in after["batches"]} & set(ids.values())
    assert after["batch_counts"]["completed"] >= 3


def test_status_shows_every_count_with_units_and_the_failed_orders(
    workers: Any, service_env: dict[str, str]
) -> None:
    from tasks import submit_batch

    # Given a finished batch where six of nine orders failed (five in preflight, one in QC)
    tag = f"st-{uuid.uuid4().hex[:6]}"
    submit_batch(orders_built_to_fail(tag), "tests", "high", {"batch_id": tag})
    assert wait_for_final([tag]) == {tag: "PARTIAL"}

    # When its status is shown as JSON, then as a table
    status = _json("status", tag, "--json", env=service_env)
    table = batchline("status", tag, env={**service_env, **WIDE})
    few = batchline("status", tag, "--failures", "2", env={**service_env, **WIDE})

    # Then the JSON has the new fields, and the failed orders with class and code
    assert (status["total"], status["completed"], status["failed"]) == (9, 3, 6)
    assert (status["cancelled"], status["remaining"], status["eta_human"]) == (0, 0, "0 s")
    assert status["velocity"] > 0 and status["started_at"] and status["halted"] is False
    assert set(status["in_stage"].values()) == {0}
    assert len(status["failed_orders"]) == 6
    codes = {failure["code"] for failure in status["failed_orders"]}
    assert "publisher_language" in codes
    # And the table shows every count the JSON has, with units, never None
    assert table.returncode == 0, table.stderr
    for text in ("cancelled", "remaining", "orders/s", "ETA", "0 s", "failed orders (6 of 6)"):
        assert text in table.stdout
    for failure in status["failed_orders"]:
        assert failure["order_id"] in table.stdout and failure["code"] in table.stdout
    assert "None" not in table.stdout
    assert "failed orders (2 of 6)" in few.stdout

    # And batches lists it with its progress and failures
    listed = _json("batches", "--status", "partial", "--limit", "500", "--json", env=service_env)
    mine = next(b for b in listed["batches"] if b["batch_id"] == tag)
    assert (mine["status"], mine["failed"], mine["progress_percentage"]) == ("partial", 6, 100.0)
    rows = batchline("batches", "--priority", "high", "--limit", "500", env={**service_env, **WIDE})
    assert tag in rows.stdout and "9/9 (100 %)" in rows.stdout

    # And the monitor's error counts (all batches, last 24 h) include this batch's failures
    errors = _json("monitor", "--json", env=service_env)["errors"]
    classes: dict[str, int] = {}
    for failure in status["failed_orders"]:
        classes[failure["error_class"]] = classes.get(failure["error_class"], 0) + 1
    for error_class, count in classes.items():
        assert errors["by_class"].get(error_class, 0) >= count, error_class


def test_status_watch_refreshes_until_the_batch_ends(
    workers: Any, service_env: dict[str, str]
) -> None:
    from tasks import submit_batch

    tag = f"watch-{uuid.uuid4().hex[:6]}"
    submit_batch(make_orders(12, tag), "tests", "normal", {"batch_id": tag})

    watched = batchline(
        "status", tag, "--watch", "--json", "--interval", "0.3", env=service_env, timeout=180
    )

    assert watched.returncode == 0, watched.stderr
    frames = [json.loads(line) for line in watched.stdout.splitlines()]
    assert frames[-1]["status"] == "completed" and frames[-1]["finalized_at"]
    assert all(frame["finalized_at"] is None for frame in frames[:-1])
    assert frames[-1]["completed"] == 12


def test_batches_refuses_an_unknown_status_naming_the_option(service_env: dict[str, str]) -> None:
    shown = batchline("batches", "--status", "sleeping", env=service_env)

    assert shown.returncode == 2
    assert "--status" in shown.stderr and "sleeping" in shown.stderr
