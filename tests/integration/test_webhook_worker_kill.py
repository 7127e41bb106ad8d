"""A worker killed between the webhook POST and the receipt commit publishes once.

Real worker process, real ledger, real HTTP publisher (``tests.support_publisher_server``)
that honours ``Idempotency-Key``. The publisher holds its first response; while it
is held the test SIGKILLs the pool process that sent it, so the receipt never
reaches the ledger. The message comes back (``task_reject_on_worker_lost``), the
delivery runs again with the same key, and the publisher answers with the first
publish instead of making a second.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Callable

import pytest

from cli.workers import ALL_LANES, spawn_worker, stop_workers
from tests.integration.helpers import (
    assert_each_delivered_once,
    item_states,
    register_webhook_publisher,
    submit_in_child,
    wait_for_final,
    wait_until,
    webhook_orders,
)
from tests.support_processes import child_pids
from tests.support_publisher_server import PublisherServer

pytestmark = pytest.mark.integration

WEBHOOK_REDIS_DB = 12
DOMAIN = "webhook-news.example"


def test_killed_between_post_and_receipt_commit_publishes_once(
    service_env, tmp_path, isolated_redis: Callable[[int], str]
) -> None:
    with PublisherServer() as server:
        # Given a webhook publisher that holds its first response
        register_webhook_publisher(DOMAIN, server.url)
        server.hold(30, count=1)
        env = {
            **service_env,
            "REDIS_URL": isolated_redis(WEBHOOK_REDIS_DB),
            "DELIVERY_BACKEND": "webhook",
        }
        worker = spawn_worker(
            ALL_LANES,
            concurrency=1,
            name="webhook",
            env=env,
            log_path=tmp_path / "worker.log",
        )
        tag = f"hook-{uuid.uuid4().hex[:6]}"
        orders = webhook_orders(tag, 4, DOMAIN)
        try:
            submit_in_child([{"id": tag, "priority": "high", "orders": orders}], env, tmp_path)

            # When the pool process is killed while its POST waits for the answer
            wait_until(lambda: bool(server.held_orders()), timeout=60, interval=0.02)
            (held,) = server.held_orders()
            for child in child_pids(worker.pid):
                os.kill(child, signal.SIGKILL)

            # Then the batch still completes, with one effective publish per order
            assert wait_for_final([tag], timeout=120) == {tag: "COMPLETED"}
        finally:
            stop_workers([worker])
        assert set(item_states(tag).values()) == {"DELIVERED"}
        assert_each_delivered_once(tag)
        for order in orders:
            assert server.effective_publishes(str(order["order_id"])) == 1
        assert server.requests(held) == 2  # the lost answer was asked for again
