"""Orders deferred by a rate limit while the system is halted run as soon as it resumes.

A chunk that meets a rate limit keeps its orders reserved for its retry message
(``<task id>@retry``) for the retry delay plus one lease (660 s by default). A retry
message that arrives while the system is halted claims nothing and is spent, so
before the fix those orders waited out the whole reservation after ``batchline
resume-all``: the batch finished about 11 minutes late.

Here a worker of this test's own (its own Redis database, ``preflight=12/min:1``)
meets the limit, the system is halted until the retry has been spent, and
``batchline resume-all`` runs as an operator runs it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from sqlalchemy import select

from cli.workers import ALL_LANES, spawn_worker, stop_workers
from ledger.db import transaction
from ledger.models import Item
from metrics.keys import lane_queue_keys
from pipeline.lanes import PRIORITIES
from pipeline.settings import get_settings
from tests.integration.helpers import (
    assert_each_delivered_once,
    item_states,
    make_orders,
    submit_in_child,
    wait_for_final,
    wait_until,
)

pytestmark = pytest.mark.integration

DEFERRAL_REDIS_DB = 7
ORDERS = 3
#: Far less than the reservation the orders would otherwise wait out (660 s).
FINISH_WITHIN_SECONDS = 150.0


def _reserved_for_retry(batch_id: str) -> dict[str, datetime]:
    """order_id -> when the reservation runs out, for the batch's orders held for a retry."""
    with transaction() as session:
        rows = session.execute(
            select(Item.order_id, Item.lease_expires_at).where(
                Item.batch_id == batch_id, Item.lease_owner.like("%@retry")
            )
        )
        return {str(order_id): until for order_id, until in rows if until is not None}


def _broker_empty(client: redis.Redis) -> bool:
    """No message waits in a lane, and none is held by a worker (an ETA retry included)."""
    keys = [key for lane in PRIORITIES for key in lane_queue_keys(lane)]
    return client.hlen("unacked") == 0 and not any(client.llen(key) for key in keys)


def test_orders_deferred_while_halted_finish_promptly_after_resume_all(
    service_env: dict[str, str],
    tmp_path: Path,
    isolated_redis: Callable[[int], str],
    halt: Callable[[str], object],
) -> None:
    env = {
        **service_env,
        "REDIS_URL": isolated_redis(DEFERRAL_REDIS_DB),
        # One preflight every 5 s, no burst: the second and third orders are deferred,
        # their retry due 5 s on (the halt lands within a poll, 0.05 s, of the deferral).
        "BATCH_RATE_LIMITS": "preflight=12/min:1",
        "BATCH_RATE_LIMIT_MAX_WAIT_SECONDS": "1",
    }
    lease = get_settings().batch_lease_seconds
    batch_id = f"halt-defer-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(env["REDIS_URL"])
    worker = spawn_worker(ALL_LANES, concurrency=1, name="defer", env=env, log_path=tmp_path / "w")
    try:
        # Given orders a rate limit deferred to their chunk's retry, and then a halt
        orders = make_orders(ORDERS, batch_id)
        submit_in_child([{"id": batch_id, "priority": "normal", "orders": orders}], env, tmp_path)
        wait_until(lambda: _reserved_for_retry(batch_id), timeout=60)
        halt("test: halted while orders wait out a rate limit")

        # When the retry came due during the halt (so its message was spent claiming
        # nothing) and the operator then resumes
        def retry_spent() -> bool:
            reserved = _reserved_for_retry(batch_id)
            due = all(u - timedelta(seconds=lease) < datetime.now(UTC) for u in reserved.values())
            return due and _broker_empty(client)

        wait_until(retry_spent, timeout=90, interval=0.5)
        still_reserved = _reserved_for_retry(batch_id)
        resumed_at = datetime.now(UTC)
        command = [sys.executable, "-m", "cli", "resume-all"]
        subprocess.run(command, env={**os.environ, **env}, check=True, capture_output=True)

        # Then the deferred orders no longer wait out their reservation: the batch
        # completes well within it, every order delivered once
        assert still_reserved, "no order was held for a retry across the halt"
        assert all(u > resumed_at + timedelta(seconds=60) for u in still_reserved.values())
        final = wait_for_final([batch_id], timeout=FINISH_WITHIN_SECONDS)
        assert final == {batch_id: "COMPLETED"}
        assert set(item_states(batch_id).values()) == {"DELIVERED"}
        assert_each_delivered_once(batch_id)
    finally:
        stop_workers([worker])
        client.close()
