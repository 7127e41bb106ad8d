"""Concurrency caps hold across worker processes, audited from the ledger.

Two real worker processes (three pool processes each) share one isolated Redis
database; every stage is capped, with caps far below what the pool processes
could run at once. Each stage output records the span during which its chunk
held the item (``started_at`` -> ``finished_at``), so the ledger can be swept
afterwards for the most items that ever ran at once: globally, per customer and
per publisher domain. ``BATCH_PUBLISHER_CAPPED_STAGES`` names every stage too, so
the publisher cap applies to every span (by default it covers delivery only).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from cli.workers import ALL_LANES, spawn_worker, stop_workers
from pipeline.audit import max_overlap, max_overlap_by
from pipeline.stage_registry import STAGE_NAMES
from tests.integration.helpers import (
    assert_each_delivered_once,
    item_states,
    make_orders,
    output_spans,
    submit_in_child,
    wait_for_final,
    wait_until,
)

pytestmark = pytest.mark.integration

CAPS_REDIS_DB = 9
CAP_GLOBAL = 3
CAP_PER_CUSTOMER = 2
CAP_PER_PUBLISHER = 1
ORDERS = 40
ALL_STAGES = ",".join(STAGE_NAMES)


def _capped_env(service_env: dict[str, str], redis_url: str) -> dict[str, str]:
    return {
        **service_env,
        "REDIS_URL": redis_url,
        "BATCH_CAPPED_STAGES": ALL_STAGES,
        "BATCH_PUBLISHER_CAPPED_STAGES": ALL_STAGES,
        "BATCH_CAP_GLOBAL": str(CAP_GLOBAL),
        "BATCH_CAP_PER_CUSTOMER": str(CAP_PER_CUSTOMER),
        "BATCH_CAP_PER_PUBLISHER": str(CAP_PER_PUBLISHER),
        "BATCH_CHUNK_PREFLIGHT_OPTIMAL": "2",
        "BATCH_CHUNK_WRITING_OPTIMAL": "2",
        "BATCH_CHUNK_QC_OPTIMAL": "2",
        "BATCH_CHUNK_DELIVERY_OPTIMAL": "2",
    }


def _occupied_slot_keys(client: redis.Redis) -> dict[str, int]:
    return {key.decode(): int(client.zcard(key)) for key in client.scan_iter("batch:slots:*")}


def test_caps_are_never_exceeded_under_concurrent_workers(
    service_env, tmp_path: Path, isolated_redis: Callable[[int], str]
) -> None:
    # Given caps of 3 in all, 2 per customer and 1 per publisher on every stage,
    # and a batch spread over several customers and publishers
    env = _capped_env(service_env, isolated_redis(CAPS_REDIS_DB))
    batch_id = f"caps-{uuid.uuid4().hex[:8]}"
    orders = make_orders(ORDERS, batch_id)
    assert len({o["customer_id"] for o in orders}) >= 4
    assert len({o["publisher_domain"] for o in orders}) >= 4
    submit_in_child([{"id": batch_id, "priority": "normal", "orders": orders}], env, tmp_path)

    # When two workers with three pool processes each run it
    workers = [
        spawn_worker(
            ALL_LANES, concurrency=3, name=name, env=env, log_path=tmp_path / f"{name}.log"
        )
        for name in ("caps-a", "caps-b")
    ]
    try:
        assert wait_for_final([batch_id], timeout=90) == {batch_id: "COMPLETED"}
    finally:
        stop_workers(workers)

    # Then no cap was ever exceeded, and the global cap was really tested (2+ items at once)
    spans = output_spans(batch_id)
    assert len(spans) >= 4 * ORDERS  # a span per item and stage (a QC rewrite adds more)
    most_at_once = max_overlap((started, finished) for *_, started, finished in spans)
    assert 2 <= most_at_once <= CAP_GLOBAL
    per_customer = max_overlap_by((customer, s, f) for _, customer, _, s, f in spans)
    per_publisher = max_overlap_by((publisher, s, f) for _, _, publisher, s, f in spans)
    assert max(per_customer.values()) <= CAP_PER_CUSTOMER
    assert max(per_publisher.values()) <= CAP_PER_PUBLISHER
    assert set(item_states(batch_id).values()) == {"DELIVERED"}
    assert_each_delivered_once(batch_id)
    # ... and every slot was given back (the last chunks give theirs back just after committing)
    client = redis.Redis.from_url(env["REDIS_URL"])
    try:
        wait_until(lambda: not any(_occupied_slot_keys(client).values()), timeout=10)
    finally:
        client.close()
