"""``batchline exporter`` as Prometheus scrapes it, against a known ledger and Redis state.

The exporter runs as its own process on a ledger and Redis database of this test's
own (``tests.support_metrics``), planted with a state whose every count is known;
each metric the issue names must be there with that value.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from metrics.exporter import EXPORTED_METRICS
from tests.support_metrics import KNOWN, own_ledger, plant_known_state

pytestmark = pytest.mark.e2e

EXPORTER_REDIS_DB = 2


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _families(url: str) -> set[str]:
    body = httpx.get(url, timeout=30).raise_for_status().text
    return {family.name for family in text_string_to_metric_families(body)}


def _scrape(
    url: str, deadline: float = 60.0
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of one scrape, keyed by name and sorted labels (polls until it answers)."""
    give_up = time.monotonic() + deadline
    while True:
        try:
            body = httpx.get(url, timeout=30).raise_for_status().text
            break
        except httpx.TransportError:
            if time.monotonic() > give_up:
                raise
            time.sleep(0.2)
    return _samples(body)


def _samples(body: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


@pytest.fixture()
def exporter(service_env: dict[str, str], isolated_redis: Any) -> Iterator[dict[str, Any]]:
    """A planted ledger and Redis, and ``batchline exporter`` serving them."""
    redis_url = isolated_redis(EXPORTER_REDIS_DB)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    with own_ledger(service_env) as (database_url, engine):
        plant_known_state(engine, client)
        planted_at = time.monotonic()
        port = _free_port()
        env = {
            **os.environ,
            **service_env,
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "BATCH_CAP_GLOBAL": str(KNOWN["caps"]["global"]),
            "BATCH_CAP_PER_CUSTOMER": str(KNOWN["caps"]["customer"]),
            "BATCH_CAP_PER_PUBLISHER": str(KNOWN["caps"]["publisher"]),
            "BATCH_RATE_LIMITS": KNOWN["rate_limits"],
        }
        process = subprocess.Popen(
            # Settled at once: this test scrapes right after writing outputs
            # (test_new_outputs_are_counted_once_settled covers the settling).
            [sys.executable, "-m", "cli", "exporter", "--port", str(port), "--settle-seconds", "0"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            yield {
                "url": f"http://127.0.0.1:{port}/metrics",
                "engine": engine,
                "planted_at": planted_at,
            }
        finally:
            process.terminate()
            process.wait(timeout=30)
            client.close()


def _by_label(samples: dict[Any, float], name: str, label: str) -> dict[str, float]:
    return {dict(labels)[label]: value for (n, labels), value in samples.items() if n == name}


def test_every_metric_reports_the_planted_state(exporter: dict[str, Any]) -> None:
    # Given the planted state (tests.support_metrics.KNOWN); When Prometheus scrapes
    samples = _scrape(exporter["url"])

    # Then lanes, pool, items, batches and the oldest wait are the planted counts
    assert _by_label(samples, "batchline_lane_messages", "lane") == KNOWN["lane_messages"]
    pool = {
        (dict(labels)["lane"], dict(labels)["stage"]): value
        for (name, labels), value in samples.items()
        if name == "batchline_pool_items" and value
    }
    assert pool == KNOWN["pool"]
    items = _by_label(samples, "batchline_items", "state")
    assert {state: n for state, n in items.items() if n} == KNOWN["items"]
    assert items["DELIVERED"] == 0  # the finished batch's orders are history
    batches = _by_label(samples, "batchline_batches", "status")
    assert {status: n for status, n in batches.items() if n} == KNOWN["batches"]
    oldest = _by_label(samples, "batchline_oldest_waiting_seconds", "lane")
    for lane, planted in KNOWN["oldest"].items():
        # planted seconds ago, read a little later: never less, and not minutes more
        assert planted <= oldest[lane] < planted + 120, (lane, oldest)

    # And the slots in use (an expired lease not among them), the caps, the buckets
    assert _by_label(samples, "batchline_slots_in_use", "scope") == KNOWN["slots"]
    assert _by_label(samples, "batchline_slots_limit", "scope") == KNOWN["caps"]
    tokens = _by_label(samples, "batchline_rate_tokens", "service")
    # the writer's bucket refills a token a second (60/min) since it was planted
    refilled = time.monotonic() - exporter["planted_at"] + 1
    assert KNOWN["writer_tokens"] <= tokens["writer"] <= KNOWN["writer_tokens"] + refilled
    assert tokens["preflight"] == 20  # untouched: a full burst
    idle = samples[("batchline_running_batch_idle_seconds", ())]
    assert KNOWN["running_idle_seconds"] <= idle < KNOWN["running_idle_seconds"] + 120

    # And the halt, the unsent notifications, the stage histogram and the errors
    assert samples[("batchline_halted", ())] == 1
    assert samples[("batchline_notifications_unsent", ())] == KNOWN["notifications_unsent"]
    oldest_unsent = samples[("batchline_notification_oldest_unsent_seconds", ())]
    assert KNOWN["oldest_unsent_seconds"] <= oldest_unsent < KNOWN["oldest_unsent_seconds"] + 120
    for stage, count in KNOWN["stage_counts"].items():
        assert samples[("batchline_stage_seconds_count", (("stage", stage),))] == count
        total = samples[("batchline_stage_seconds_sum", (("stage", stage),))]
        assert total == pytest.approx(KNOWN["stage_sums"][stage])
    preflight = {
        dict(labels)["le"]: value
        for (name, labels), value in samples.items()
        if name == "batchline_stage_seconds_bucket" and dict(labels)["stage"] == "preflight"
    }
    assert (preflight["0.01"], preflight["0.05"], preflight["+Inf"]) == (1, 6, 6)
    writing_le = {
        dict(labels)["le"]: value
        for (name, labels), value in samples.items()
        if name == "batchline_stage_seconds_bucket" and dict(labels)["stage"] == "writing"
    }
    assert (writing_le["2.5"], writing_le["5.0"]) == (0, 5)
    errors = {
        (dict(labels)["category"], dict(labels)["error_class"]): value
        for (name, labels), value in samples.items()
        if name == "batchline_errors_total"
    }
    assert errors == KNOWN["errors"]

    # And nothing else: the families are the documented list (counters drop "_total")
    assert _families(exporter["url"]) == EXPORTED_METRICS


def test_counters_grow_with_new_stage_runs_between_scrapes(exporter: dict[str, Any]) -> None:
    # Given a first scrape
    before = _scrape(exporter["url"])
    # When one more preflight run fails
    with exporter["engine"].begin() as connection:
        connection.execute(
            text(
                """
                INSERT INTO stage_outputs (item_id, stage, attempt, ok, output, duration_ms)
                SELECT id, 'preflight', 2, false,
                       '{"category": "PERMANENT", "code": "word_count"}', 40
                FROM items WHERE state = 'FAILED'
                """
            )
        )
    after = _scrape(exporter["url"])

    # Then the counter and the histogram count it once, and nothing else moves
    key = (
        "batchline_errors_total",
        (("category", "PERMANENT"), ("error_class", "QualityRejected")),
    )
    assert (before[key], after[key]) == (1, 2)
    count = ("batchline_stage_seconds_count", (("stage", "preflight"),))
    assert after[count] == before[count] + 1
    writing = ("batchline_stage_seconds_count", (("stage", "writing"),))
    assert after[writing] == before[writing]


def test_new_outputs_are_counted_once_settled(
    service_env: dict[str, str], isolated_redis: Any
) -> None:
    # Given a planted ledger and a collector that lets new outputs settle for 30 s
    from prometheus_client import CollectorRegistry, generate_latest

    from metrics.exporter import BatchlineCollector

    client = redis.Redis.from_url(isolated_redis(EXPORTER_REDIS_DB), decode_responses=True)
    now = [1000.0]
    with own_ledger(service_env) as (_url, engine):
        plant_known_state(engine, client)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(
            BatchlineCollector(engine, client, settle_seconds=30, clock=lambda: now[0])
        )

        def preflight_runs() -> float:
            body = generate_latest(registry).decode()
            return _samples(body)[("batchline_stage_seconds_count", (("stage", "preflight"),))]

        # When it scrapes before and after the outputs have settled
        first = preflight_runs()
        now[0] += 29
        early = preflight_runs()
        now[0] += 2
        settled = preflight_runs()

        # Then the six planted runs are counted once 30 s have passed since they were seen
        assert (first, early, settled) == (0, 0, KNOWN["stage_counts"]["preflight"])
        client.close()


def _pool(registry: Any) -> dict[tuple[str, str], float]:
    from prometheus_client import generate_latest

    samples = _samples(generate_latest(registry).decode())
    pool = {
        (dict(labels)["lane"], dict(labels)["stage"]): value
        for (name, labels), value in samples.items()
        if name == "batchline_pool_items" and value
    }
    pool[("age", "")] = samples[("batchline_item_counts_age_seconds", ())]
    return pool


_TAKE_ONE_FROM_THE_POOL = text(
    """
    UPDATE items SET queued_at = now() WHERE id = (
        SELECT min(id) FROM items
        WHERE batch_id = 'k-high' AND state = 'PENDING' AND queued_at IS NULL)
    """
)


def test_order_counts_are_a_snapshot_whose_age_is_exported(
    service_env: dict[str, str], isolated_redis: Any
) -> None:
    # Given a collector that re-reads the order counts once an hour, on a planted ledger
    from prometheus_client import CollectorRegistry

    from metrics.exporter import BatchlineCollector

    client = redis.Redis.from_url(isolated_redis(EXPORTER_REDIS_DB), decode_responses=True)
    now = [1000.0]
    with own_ledger(service_env) as (_url, engine):
        plant_known_state(engine, client)
        collector = BatchlineCollector(
            engine, client, settle_seconds=0, clock=lambda: now[0], refresh_seconds=3600
        )
        registry = CollectorRegistry(auto_describe=False)
        registry.register(collector)
        try:
            first = _pool(registry)
            # When an order leaves the pool and a scrape comes 7 s later
            with engine.begin() as connection:
                connection.execute(_TAKE_ONE_FROM_THE_POOL)
            now[0] += 7
            stale = _pool(registry)
            # ... and again once the counts were read anew
            collector.item_counts.refresh()
            fresh = _pool(registry)
        finally:
            collector.item_counts.stop()
            client.close()

    # Then the scrape in between serves the snapshot and says it is 7 s old
    high = ("high", "preflight")
    assert (first[high], first[("age", "")]) == (KNOWN["pool"][high], 0)
    assert (stale[high], stale[("age", "")]) == (KNOWN["pool"][high], 7)
    assert (fresh[high], fresh[("age", "")]) == (KNOWN["pool"][high] - 1, 0)


def test_order_counts_are_read_again_in_the_background(
    service_env: dict[str, str], isolated_redis: Any
) -> None:
    # Given a collector re-reading the order counts every 0.2 s, scraped once
    from prometheus_client import CollectorRegistry

    from metrics.exporter import BatchlineCollector

    client = redis.Redis.from_url(isolated_redis(EXPORTER_REDIS_DB), decode_responses=True)
    with own_ledger(service_env) as (_url, engine):
        plant_known_state(engine, client)
        collector = BatchlineCollector(engine, client, settle_seconds=0, refresh_seconds=0.2)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(collector)
        high = ("high", "preflight")
        try:
            before = _pool(registry)[high]
            # When an order leaves the pool
            with engine.begin() as connection:
                connection.execute(_TAKE_ONE_FROM_THE_POOL)
            # Then later scrapes, which read nothing themselves, show it
            give_up = time.monotonic() + 60
            while _pool(registry)[high] != before - 1:
                assert time.monotonic() < give_up, "the counts were never read again"
                time.sleep(0.1)
        finally:
            collector.item_counts.stop()
            client.close()
    assert before == KNOWN["pool"][high]
