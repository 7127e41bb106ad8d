"""A publisher endpoint's full outage opens its circuit: orders wait, spend nothing, and go.

Real worker process, real beat (the sweeper puts waiting orders back in the pool
when the cool-down ends), real ledger, real HTTP publisher answering every
request with 503. With ``max_retries`` 1, an order whose failures were all
counted would fail after two requests; behind the circuit every order waits in
the pool (leased to ``circuit@publisher:<domain>``), the batch's status says why,
and when the endpoint is back all are delivered once, without any recovery.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from cli.workers import ALL_LANES, spawn_beat, spawn_worker, stop_workers
from ledger.db import transaction
from ledger.models import Event, Item
from ledger.pool import circuit_waits
from tests.integration.helpers import (
    assert_each_delivered_once,
    item_states,
    register_webhook_publisher,
    wait_for_final,
    wait_until,
    webhook_orders,
)
from tests.support_publisher_server import PublisherServer

pytestmark = pytest.mark.integration

BREAKER_REDIS_DB = 4
DOMAIN = "outage-news.example"
CIRCUIT = f"publisher:{DOMAIN}"
ORDERS = 12
FAILURES_TO_OPEN = 3
#: Four cool-downs (BREAKER_COOLDOWN_SECONDS below): a probe after each.
COOLDOWN_SECONDS = 1.0
OUTAGE_SECONDS = 4 * COOLDOWN_SECONDS

_SUBMIT = """
import json, sys
from tasks import submit_batch
spec = json.load(open(sys.argv[1]))
submit_batch(spec["orders"], "tests", "high", {"batch_id": spec["id"], "max_retries": 1})
"""


def _submit(tag: str, orders: list[dict[str, object]], env: dict[str, str], tmp: Path) -> None:
    manifest = tmp / "batch.json"
    manifest.write_text(json.dumps({"id": tag, "orders": orders}))
    command = [sys.executable, "-c", _SUBMIT, str(manifest)]
    subprocess.run(command, env={**os.environ, **env}, check=True)


def _attempts(batch_id: str) -> dict[str, tuple[str, int]]:
    """State and spent attempts of each order waiting on the circuit (or failed).

    An order a chunk holds right now counts its claim's attempt until the chunk
    refunds it, so only orders at rest are read.
    """
    with transaction() as session:
        rows = session.execute(
            select(Item.order_id, Item.state, Item.attempts).where(
                Item.batch_id == batch_id,
                (Item.lease_owner.like("circuit@%")) | (Item.state == "FAILED"),
            )
        )
        return {order: (state, int(attempts)) for order, state, attempts in rows}


def _circuit_events(batch_id: str) -> list[str]:
    with transaction() as session:
        query = select(Event.kind).where(Event.batch_id == batch_id, Event.kind.like("circuit_%"))
        return list(session.scalars(query.order_by(Event.id)))


def _waiting(batch_id: str) -> list[dict[str, object]]:
    with transaction() as session:
        return circuit_waits(session, batch_id)


def test_full_endpoint_outage_waits_without_spending_attempts_then_delivers(
    service_env: dict[str, str], tmp_path: Path, isolated_redis: Callable[[int], str]
) -> None:
    env = {
        **service_env,
        "REDIS_URL": isolated_redis(BREAKER_REDIS_DB),
        "DELIVERY_BACKEND": "webhook",
        "BREAKER_FAILURES": str(FAILURES_TO_OPEN),
        "BREAKER_WINDOW_SECONDS": "60",
        "BREAKER_COOLDOWN_SECONDS": str(COOLDOWN_SECONDS),
    }
    with PublisherServer() as server:
        # Given a publisher whose endpoint answers every request with 503
        register_webhook_publisher(DOMAIN, server.url)
        server.fail_next(1_000_000, status=503)
        worker = spawn_worker(
            ALL_LANES, concurrency=2, name="breaker", env=env, log_path=tmp_path / "worker.log"
        )
        beat = spawn_beat(
            env=env, log_path=tmp_path / "beat.log", schedule_path=tmp_path / "schedule"
        )
        tag = f"outage-{uuid.uuid4().hex[:6]}"
        orders = webhook_orders(tag, ORDERS, DOMAIN)
        try:
            _submit(tag, orders, env, tmp_path)

            # When the outage lasts several cool-downs
            wait_until(lambda: len(_waiting(tag)) == 1, timeout=120)
            outage_started = time.monotonic()
            from tasks.status import batch_status

            during: list[dict[str, tuple[str, int]]] = []
            circuits_shown: set[str] = set()
            while time.monotonic() - outage_started < OUTAGE_SECONDS:
                during.append(_attempts(tag))
                # Orders leave the wait for a probe now and then: collect what the
                # status showed over the outage rather than at one moment.
                circuits_shown |= {w["circuit"] for w in batch_status(tag)["waiting_on"]}
                time.sleep(0.5)
            failed_requests = sum(server.requests(str(o["order_id"])) for o in orders)

            # Then nothing failed and no order spent more than the one try that
            # counted before the circuit opened
            assert all(state != "FAILED" for snapshot in during for state, _ in snapshot.values())
            spent = [attempts for snapshot in during for _, attempts in snapshot.values()]
            assert spent and max(spent) <= 1
            assert circuits_shown == {CIRCUIT}
            # the endpoint saw the failures that opened the circuit and one probe per
            # cool-down, not every order's whole budget
            assert failed_requests < ORDERS * 2

            # When the endpoint is back
            server.stop_failing()
            back = time.monotonic()
            assert wait_for_final([tag], timeout=120) == {tag: "COMPLETED"}
            recovered_in = time.monotonic() - back
        finally:
            stop_workers([beat, worker])
        # Then every order was delivered once, by this batch, without any recovery
        assert set(item_states(tag).values()) == {"DELIVERED"}
        assert_each_delivered_once(tag)
        for order in orders:
            assert server.effective_publishes(str(order["order_id"])) == 1
        events = _circuit_events(tag)
        assert events[0] == "circuit_opened" and events[-1] == "circuit_closed"
        print(
            f"\noutage: {failed_requests} failed requests for {ORDERS} orders over"
            f" {OUTAGE_SECONDS:.0f}s, max attempts spent 1, delivered {recovered_in:.1f}s"
            f" after the endpoint came back; events {events}"
        )
