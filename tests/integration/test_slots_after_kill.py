"""Concurrency slots held by a worker that is killed come back, and the batch still completes.

A delivery chunk takes its slots (global, customer, publisher), then POSTs to a
real HTTP publisher that holds its answer. The whole worker - main process and
pool processes - is SIGKILLed meanwhile, so nobody gives the slots back and no
worker of its own puts the message back. Leases are short here: the slots and
the item's lease run out within seconds, the sweeper (beat) puts the item back
in the pool, and a fresh worker delivers it with the same idempotency key.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from sqlalchemy import select

from cli.workers import ALL_LANES, spawn_beat, spawn_worker, stop_workers
from ledger.db import transaction
from ledger.models import Item
from metrics.keys import slot_key
from pipeline.audit import max_overlap
from tasks.limits.semaphore import holders
from tests.integration.helpers import (
    assert_each_delivered_once,
    item_states,
    output_spans,
    register_webhook_publisher,
    submit_in_child,
    wait_for_final,
    wait_until,
    webhook_orders,
)
from tests.support_processes import child_pids, is_running
from tests.support_publisher_server import PublisherServer

pytestmark = pytest.mark.integration

SLOTS_REDIS_DB = 8
DOMAIN = "slots-after-kill.example"
CUSTOMER = "acme-outdoor"
CAP_GLOBAL = 2
ORDERS = 6


def _short_lease_env(service_env: dict[str, str], redis_url: str) -> dict[str, str]:
    return {
        **service_env,
        "REDIS_URL": redis_url,
        "DELIVERY_BACKEND": "webhook",
        "BATCH_CAP_GLOBAL": str(CAP_GLOBAL),
        # Delivery holds a global and a customer slot too (by default only its
        # publisher's), so the kill strands one slot of every kind.
        "BATCH_CAPPED_STAGES": "writing,delivery",
        # Leases that run out within seconds, so recovery fits in a test.
        "BATCH_TASK_SOFT_TIME_LIMIT": "3",
        "BATCH_TASK_TIME_LIMIT": "4",
        # The lease must outlast a call started at the soft limit (3 + 1 s).
        "DELIVERY_TIMEOUT_SECONDS": "1",
        "WRITER_TIMEOUT_SECONDS": "1",
        "BATCH_LEASE_SECONDS": "5",
        "BATCH_VISIBILITY_TIMEOUT": "10",  # the lowest the settings accept
        "BATCH_SWEEP_INTERVAL_SECONDS": "1",
        "BATCH_SWEEP_GRACE_SECONDS": "1",
    }


def _slot_keys() -> tuple[str, ...]:
    return (slot_key("global"), slot_key("customer", CUSTOMER), slot_key("publisher", DOMAIN))


def _item_id(batch_id: str, order_id: str) -> int:
    with transaction() as session:
        query = select(Item.id).where(Item.batch_id == batch_id, Item.order_id == order_id)
        return int(session.scalars(query).one())


def _kill_whole_worker(worker: subprocess.Popen[bytes]) -> None:
    """SIGKILL the main process first (it cannot requeue anything), then its pool processes."""
    children = child_pids(worker.pid)
    worker.send_signal(signal.SIGKILL)
    for child in children:
        os.kill(child, signal.SIGKILL)
    worker.wait()
    wait_until(lambda: not any(is_running(child) for child in children), timeout=10)


def test_slots_are_released_after_a_worker_is_killed(
    service_env, tmp_path: Path, isolated_redis: Callable[[int], str]
) -> None:
    env = _short_lease_env(service_env, isolated_redis(SLOTS_REDIS_DB))
    client = redis.Redis.from_url(env["REDIS_URL"])
    batch_id = f"slots-{uuid.uuid4().hex[:8]}"
    batch = {"id": batch_id, "priority": "high", "orders": webhook_orders(batch_id, ORDERS, DOMAIN)}
    orders = [str(o["order_id"]) for o in webhook_orders(batch_id, ORDERS, DOMAIN)]
    with PublisherServer() as server:
        # Given a webhook publisher that publishes the first delivery but holds its answer
        # (only the first: later requests, the repeat of this one included, answer at once)
        register_webhook_publisher(DOMAIN, server.url)
        server.hold(30, count=1)
        worker = spawn_worker(
            ALL_LANES, concurrency=2, name="slots-doomed", env=env, log_path=tmp_path / "doomed.log"
        )
        recovery: list[subprocess.Popen[bytes]] = []
        try:
            submit_in_child([batch], env, tmp_path)
            wait_until(lambda: bool(server.held_orders()), timeout=30, interval=0.01)
            (held_order,) = server.held_orders()
            holder = f"{_item_id(batch_id, held_order)}:delivery"

            # When the whole worker is killed while that POST waits for its answer
            _kill_whole_worker(worker)

            # Then its slots are still held right after the kill: nobody gave them back.
            # (Calls run concurrently within the chunk, so which of its orders the
            # publisher is holding is not known exactly: some delivery holds a slot.)
            for key in _slot_keys():
                held = holders(client, key)
                assert held and all(h.endswith(":delivery") for h in held), (key, holder)
            # ... and a fresh worker with the sweeper finishes the batch
            recovering_since = time.monotonic()
            recovery = [
                spawn_worker(
                    ALL_LANES,
                    concurrency=2,
                    name="slots-fresh",
                    env=env,
                    log_path=tmp_path / "fresh.log",
                ),
                spawn_beat(
                    env=env, log_path=tmp_path / "beat.log", schedule_path=tmp_path / "schedule"
                ),
            ]
            assert wait_for_final([batch_id], timeout=90) == {batch_id: "COMPLETED"}
            assert time.monotonic() - recovering_since < 90
        finally:
            stop_workers([worker, *recovery])
        # ... with one effective publish per order (the lost answer was asked for again)
        assert set(item_states(batch_id).values()) == {"DELIVERED"}
        assert_each_delivered_once(batch_id)
        for order_id in orders:
            assert server.effective_publishes(order_id) == 1, order_id
        assert server.requests(held_order) >= 2
    # ... the global cap held while the batch recovered
    spans = output_spans(batch_id, stages=("writing", "delivery"))
    assert max_overlap((started, finished) for *_, started, finished in spans) <= CAP_GLOBAL
    # ... and every slot came back
    try:
        wait_until(lambda: not list(client.scan_iter("batch:slots:*")), timeout=10)
    finally:
        client.close()
