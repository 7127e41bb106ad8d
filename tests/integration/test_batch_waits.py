"""A batch's retries, deferrals and rate-limit waits reach its performance report.

One worker process delivers four orders to a real HTTP publisher under a delivery
bucket of one token a second (burst 1), one order per chunk. The publisher
answers the first request 503 (a transient error: retried, then delivered) and the
second 429 (a rate limit: deferred without spending an attempt, then delivered).
Every later request waits for its token in the worker. The report must count the
one retry and the one deferral exactly, and the rate-limit waits the bucket forced.
A second test runs one chunk in this process (as ``test_retries`` does) and checks
the increments a call's noted wait and its deferral become.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from cli.workers import ALL_LANES, spawn_worker, stop_workers
from metrics.collector import BatchMetricsCollector
from metrics.keys import batch_waits_key
from metrics.report import html_page
from tests.integration import test_retries
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

WAITS_REDIS_DB = 7
DOMAIN = "batch-waits.example"
ORDERS = 4
SECONDS_PER_TOKEN = 1.0

#: test_retries' one-order batch, driven by calling the chunk runner in this process
batch = test_retries.batch
_run = test_retries._run


def test_the_report_counts_retries_deferrals_and_rate_limit_waits(
    service_env, tmp_path: Path, isolated_redis: Callable[[int], str]
) -> None:
    # Given a delivery bucket of one token a second and one-order delivery chunks
    redis_url = isolated_redis(WAITS_REDIS_DB)
    env = {
        **service_env,
        "REDIS_URL": redis_url,
        "DELIVERY_BACKEND": "webhook",
        "BATCH_RATE_LIMITS": f"delivery={60 / SECONDS_PER_TOKEN:g}/min:1",
        "BATCH_RATE_LIMIT_MAX_WAIT_SECONDS": "10",
        "BATCH_CHUNK_DELIVERY_OPTIMAL": "1",
    }
    batch_id = f"waits-{uuid.uuid4().hex[:8]}"
    orders = webhook_orders(batch_id, ORDERS, DOMAIN)
    with PublisherServer() as server:
        register_webhook_publisher(DOMAIN, server.url)
        # and a publisher whose first answer is a 503 and whose second is a 429
        server.fail_next(1, status=503)
        server.fail_next(1, status=429, retry_after="1")
        worker = spawn_worker(
            ALL_LANES, concurrency=1, name="waits", env=env, log_path=tmp_path / "waits"
        )
        try:
            # When the batch runs
            submit_in_child([{"id": batch_id, "priority": "high", "orders": orders}], env, tmp_path)
            assert wait_for_final([batch_id], timeout=90) == {batch_id: "COMPLETED"}
        finally:
            stop_workers([worker])
    assert set(item_states(batch_id).values()) == {"DELIVERED"}
    assert_each_delivered_once(batch_id)

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        raw = client.hgetall(batch_waits_key(batch_id))
        report = BatchMetricsCollector(client=client).get_performance_report(batch_id)
    finally:
        client.close()

    # Then the one retry is counted under its reason code ...
    assert report["retries"] == {
        "total": 1,
        "by_code": {"webhook_status_503": 1},
        "by_stage": {"delivery": {"webhook_status_503": 1}},
    }
    # ... the one deferral under its cause (no slot or circuit deferred anything) ...
    assert report["deferrals"] == {
        "total": 1,
        "by_cause": {"rate_limit": 1},
        "by_stage": {"delivery": {"rate_limit": 1}},
    }
    # ... and the bucket's waits under delivery, as the hash holds them
    delivery = report["waits"]["delivery"]
    assert delivery["rate_waits"] == int(raw["wait:delivery:rate:n"]) >= 1
    assert delivery["rate_wait_ms"] == int(raw["wait:delivery:rate:ms"]) > 0
    # six requests, one token each: no call waited longer than a token takes
    assert delivery["rate_wait_ms"] <= delivery["rate_waits"] * SECONDS_PER_TOKEN * 1000
    assert (delivery["slot_waits"], delivery["slot_wait_ms"]) == (0, 0)
    assert report["waits"]["preflight"]["rate_waits"] == 0  # no bucket for preflight
    # the pool waits are still there beside them
    assert report["waits"]["delivery"]["runs"] >= ORDERS
    # And the HTML report shows the same figures in its tables
    page = html_page(report)
    assert "<td>delivery</td><td>webhook_status_503</td><td>1</td>" in page
    assert "<td>delivery</td><td>rate_limit</td><td>1</td>" in page
    assert f"<td>{delivery['rate_waits']}</td><td>{delivery['rate_wait_ms']}</td>" in page


def test_a_chunk_reports_the_waits_its_calls_noted(batch, monkeypatch) -> None:
    # Given a preflight that sleeps 0.2 s for a call slot, then is rate limited
    from pipeline.errors import RateLimited
    from pipeline.wait_tally import note_wait
    from tests.integration.stage_patch import patch_stage

    def limited(order: Any, previous: Any, context: Any) -> None:
        note_wait("slot", 0.2)
        raise RateLimited("429", retry_after=30, code="preflight_rate_gate")

    patch_stage(monkeypatch, "preflight", handle=limited)

    # When the chunk runs (in this process, against the real ledger)
    report = _run(batch, "task-w", max_retries=0)

    # Then its increments name the deferral's cause and the wait, and nothing else
    assert report.retry_ids == batch[1]
    assert report.waits == {
        "defer:preflight:rate_limit": 1,
        "wait:preflight:slot:n": 1,
        "wait:preflight:slot:ms": 200,
    }
