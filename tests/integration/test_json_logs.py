"""A worker started with LOG_FORMAT=json writes one JSON stream, every chunk line with its ids.

The worker runs on a Redis database of this module's own, so it, and no session
worker, takes the batch's chunks and writes their lines into the log read here.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cli.workers import WORK_LANES, spawn_worker, stop_workers
from tests.integration.helpers import make_orders, submit_in_child, wait_for_final

pytestmark = pytest.mark.integration

#: Redis database of this module's worker (see ``isolated_redis``).
JSON_LOGS_REDIS_DB = 3


def _log_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of the log, parsed: a line that is not one JSON object fails here."""
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"not a JSON line in the worker's log: {line!r}")
    assert all(isinstance(entry, dict) for entry in parsed)
    return parsed


def test_every_line_is_json_and_a_chunks_lines_carry_its_batch_and_task_ids(
    service_env: dict[str, str], tmp_path: Path, isolated_redis: Callable[[int], str]
) -> None:
    # Given a worker logging JSON at INFO (Celery's lines too), on a Redis of its own
    env = {
        **service_env,
        "REDIS_URL": isolated_redis(JSON_LOGS_REDIS_DB),
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
    }
    log_path = tmp_path / "worker.log"
    worker = spawn_worker(
        ("maintenance", *WORK_LANES),
        concurrency=1,
        name="jsonlogs",
        env=env,
        log_path=log_path,
        loglevel="INFO",
    )
    try:
        # When a batch with one order that fails preflight runs through it
        batch_id = f"jsonlog-{uuid.uuid4().hex[:8]}"
        orders = make_orders(3, batch_id)
        failing = orders[1]
        orders[1] = {**failing, "target_url": f"https://{failing['publisher_domain']}/self"}
        submit_in_child([{"id": batch_id, "priority": "high", "orders": orders}], env, tmp_path)
        assert wait_for_final([batch_id], timeout=180)[batch_id] == "PARTIAL"
    finally:
        stop_workers([worker])

    # Then every line of its log is a JSON object, Celery's own lines included
    lines = _log_lines(log_path)
    assert any(line.get("logger", "").startswith("celery") for line in lines)
    batch_lines = [line for line in lines if line.get("batch_id") == batch_id]
    # and the batch's lines carry the task, stage and chunk they belong to
    stages = {line.get("stage") for line in batch_lines}
    # (QC runs inside the writing chunks, fused: its lines carry the writing chunk's ids)
    assert {"preflight", "writing", "delivery"} <= stages
    assert all(line.get("task_id") and line.get("task") for line in batch_lines)
    chunk_lines = [line for line in batch_lines if line.get("stage")]
    assert all(
        line.get("chunk_size", 0) >= 1 and line.get("lane") == "high" for line in chunk_lines
    )
    # Celery's line about a chunk it ran is among them, with the chunk's outcome
    finished = [line for line in batch_lines if line.get("logger") == "celery.app.trace"]
    assert any("ITEMS_FAILED" in line["event"] for line in finished), finished
    # and the failed order's own line names it
    failed = [line for line in batch_lines if line["event"] == "item.failed"]
    assert [line.get("order_id") for line in failed] == [failing["order_id"]]
    assert failed[0]["stage"] == "preflight"
    # Lines of the worker's main process about a task carry its id
    received = [line for line in lines if "received" in line["event"] and line.get("task_id")]
    assert {line["task_id"] for line in chunk_lines} <= {line["task_id"] for line in received}
