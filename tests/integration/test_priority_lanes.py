"""Strict lane order, checked with a dedicated worker process and its own Redis database."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text

from celery_app import LANES
from cli.workers import spawn_worker, stop_workers
from ledger.db import transaction
from tests.integration.helpers import make_orders, submit_in_child, wait_for_final

pytestmark = pytest.mark.integration

LANE_TEST_REDIS_DB = 14

_SPAN = text(
    """
    SELECT min(o.created_at), max(o.created_at) FROM stage_outputs o
    JOIN items i ON i.id = o.item_id WHERE i.batch_id = :batch_id
    """
)


def test_high_batch_overtakes_a_queued_low_backlog(
    service_env, tmp_path: Path, isolated_redis: Callable[[int], str]
) -> None:
    # Given a low backlog and then a high batch, queued while no worker runs
    env = {**service_env, "REDIS_URL": isolated_redis(LANE_TEST_REDIS_DB)}
    tag = uuid.uuid4().hex[:8]
    low, normal, high = f"{tag}-low", f"{tag}-normal", f"{tag}-high"
    submit_in_child(
        [
            {"id": low, "priority": "low", "orders": make_orders(60, low)},
            {"id": normal, "priority": "normal", "orders": make_orders(30, normal)},
            {"id": high, "priority": "high", "orders": make_orders(20, high)},
        ],
        env,
        tmp_path,
    )

    # When one worker with one process drains all three lanes
    worker = spawn_worker(
        tuple(LANES),
        concurrency=1,
        name="lanes",
        env=env,
        log_path=tmp_path / "lanes.log",
    )
    try:
        wait_for_final([low, normal, high], timeout=180)
    finally:
        stop_workers([worker])

    # Then every stage of the high batch ran before any of normal, and normal before low
    with transaction() as session:
        spans = {b: session.execute(_SPAN, {"batch_id": b}).one() for b in (low, normal, high)}
    assert spans[high][1] < spans[normal][0], spans
    assert spans[normal][1] < spans[low][0], spans
