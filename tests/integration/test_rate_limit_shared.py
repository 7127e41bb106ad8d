"""A rate limit is one token bucket in Redis, shared by every worker process.

Two worker processes (one pool process each) deliver ten orders to a real HTTP
publisher under ``delivery=60/min:2``: one request a second, two at once after
a quiet spell, one bucket for every publisher domain. The publisher's own clock
says when each publish happened (``published_at`` in its answer, kept in the
ledger's receipts), so the pace is measured where it matters: at the publisher.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
from celery import Celery
from sqlalchemy import select

from cli.workers import ALL_LANES, spawn_worker, stop_workers
from ledger.db import transaction
from ledger.models import DeliveryReceipt
from tests.integration.helpers import (
    assert_each_delivered_once,
    item_states,
    register_webhook_publisher,
    submit_in_child,
    wait_for_final,
    webhook_orders,
)
from tests.support_publisher_server import PublisherServer

pytestmark = pytest.mark.integration

RATE_REDIS_DB = 7
DOMAIN = "rate-shared.example"
ORDERS = 10
PER_SECOND = 1.0
BURST = 2
TOLERANCE = 1  # a request's arrival trails its token by a few milliseconds
DELIVERY_TASK = "batchline.stage.delivery"


def _publish_times(batch_id: str) -> list[float]:
    """When the publisher published each order, by its clock (epoch seconds), in order."""
    with transaction() as session:
        query = select(DeliveryReceipt.receipt).where(DeliveryReceipt.batch_id == batch_id)
        receipts = list(session.scalars(query))
    return sorted(datetime.fromisoformat(r["published_at"]).timestamp() for r in receipts)


def _delivery_tasks_per_worker(broker_url: str) -> dict[str, int]:
    """How many delivery tasks each live worker has run, asked over the broker."""
    app = Celery(broker=broker_url)
    try:
        stats = app.control.inspect(timeout=1).stats() or {}
    finally:
        app.close()
    return {name: int(s.get("total", {}).get(DELIVERY_TASK, 0)) for name, s in stats.items()}


def test_a_rate_limit_is_shared_across_two_worker_processes(
    service_env, tmp_path: Path, isolated_redis: Callable[[int], str]
) -> None:
    # Given one delivery bucket of 1/s (burst 2), one-order delivery chunks
    # and two worker processes of one pool process each
    env = {
        **service_env,
        "REDIS_URL": isolated_redis(RATE_REDIS_DB),
        "DELIVERY_BACKEND": "webhook",
        "BATCH_RATE_LIMITS": f"delivery={PER_SECOND * 60:g}/min:{BURST}",
        "BATCH_RATE_LIMIT_MAX_WAIT_SECONDS": "5",
        "BATCH_CHUNK_DELIVERY_OPTIMAL": "1",
    }
    batch_id = f"rate-{uuid.uuid4().hex[:8]}"
    orders = webhook_orders(batch_id, ORDERS, DOMAIN)
    with PublisherServer() as server:
        register_webhook_publisher(DOMAIN, server.url)
        workers = [
            spawn_worker(ALL_LANES, concurrency=1, name=name, env=env, log_path=tmp_path / name)
            for name in ("rate-a", "rate-b")
        ]
        try:
            # When ten orders are delivered
            submit_in_child([{"id": batch_id, "priority": "high", "orders": orders}], env, tmp_path)
            assert wait_for_final([batch_id], timeout=60) == {batch_id: "COMPLETED"}
            per_worker = _delivery_tasks_per_worker(env["REDIS_URL"])
        finally:
            stop_workers(workers)
        # Each order reached the publisher exactly once, so publishes are requests
        for order in orders:
            assert server.requests(str(order["order_id"])) == 1
    assert set(item_states(batch_id).values()) == {"DELIVERED"}
    assert_each_delivered_once(batch_id)

    # Then both workers delivered ...
    assert len(per_worker) == 2, per_worker
    assert all(count > 0 for count in per_worker.values()), per_worker
    # ... and together they kept to one bucket: in any window of T seconds at most
    # BURST + T * rate requests. Were the bucket per process, each worker would get
    # its own burst and its own 1/s: up to 4 at once and 2/s, so ten requests in
    # about 3 s, and both checks below would fail.
    times = _publish_times(batch_id)
    assert len(times) == ORDERS
    for first, last in itertools.combinations(range(ORDERS), 2):
        window = times[last] - times[first]
        assert last - first + 1 <= BURST + window * PER_SECOND + TOLERANCE, (first, last, times)
    assert times[-1] - times[0] >= (ORDERS - BURST) / PER_SECOND - TOLERANCE
