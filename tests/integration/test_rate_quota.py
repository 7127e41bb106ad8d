"""Daily quotas and ``conc=N`` bounds against real Redis, shared by several processes.

The token buckets' own tests are tests/integration/test_limits_redis.py and the
rate gate contract; here the two newer limits of ``BATCH_RATE_LIMITS``: a quota per
UTC day (a fixed window in a Redis hash) and a bound on calls in flight (a leased
semaphore held for each call), each from one process and then from several.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from collections.abc import Callable
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

import pytest
import redis

from cli.workers import ALL_LANES, spawn_worker, stop_workers
from metrics.keys import call_slot_key, rate_quota_key
from metrics.redis_client import redis_client
from pipeline.errors import RateLimited
from pipeline.limits import RateSpec, parse_rate_limits
from pipeline.pacing import paced
from tasks.limits.rate import RedisRateGate
from tests.integration.helpers import item_states, make_orders, submit_in_child, wait_until

pytestmark = pytest.mark.integration

QUOTA_REDIS_DB = 8
DAY = 86_400
PAST_PREFLIGHT = {"WRITING", "QC", "APPROVED", "DELIVERED"}


@pytest.fixture
def client(service_env: dict[str, str]) -> redis.Redis:
    return redis_client()


@pytest.fixture
def service(redis_scope: str) -> str:
    """A service name no other test uses (its keys are cleaned before and after)."""
    return redis_scope


def _gate(service: str, entry: str) -> RedisRateGate:
    return RedisRateGate(redis_client, {service: parse_rate_limits(f"x={entry}")["x"]})


def _seconds_to_utc_midnight(client: redis.Redis) -> float:
    seconds, micros = client.time()
    now = seconds + micros / 1_000_000
    return (seconds // DAY + 1) * DAY - now


# --- one process ----------------------------------------------------------------------------


def test_a_daily_quota_admits_its_calls_then_waits_for_utc_midnight(
    client: redis.Redis, service: str
) -> None:
    gate = _gate(service, "3/day")

    admitted = [gate.wait_seconds(service) for _ in range(3)]
    refused = [gate.wait_seconds(service) for _ in range(2)]

    assert admitted == [0.0, 0.0, 0.0]
    midnight = _seconds_to_utc_midnight(client)
    assert all(abs(wait - midnight) < 2 for wait in refused), (refused, midnight)
    # A refusal counts nothing: the day's count stays at the quota.
    assert int(client.hget(rate_quota_key(service), "used") or 0) == 3


def test_yesterday_s_spent_quota_starts_afresh_today(client: redis.Redis, service: str) -> None:
    today = int(client.time()[0]) // DAY
    client.hset(rate_quota_key(service), mapping={"day": today - 1, "used": 3})

    assert _gate(service, "3/day").wait_seconds(service) == 0.0
    day, used = client.hmget(rate_quota_key(service), "day", "used")
    assert day is not None and used is not None
    assert (int(day), int(used)) == (today, 1)


def test_a_per_key_quota_counts_each_key_on_its_own(client: redis.Redis, service: str) -> None:
    gate = _gate(service, "1/day:per-key")

    assert gate.wait_seconds(service, "a.example") == 0.0
    assert gate.wait_seconds(service, "b.example") == 0.0
    assert gate.wait_seconds(service, "a.example") > 0
    assert client.exists(rate_quota_key(service, "a.example"), rate_quota_key(service, "b.example"))


def test_conc_slots_are_held_until_released(client: redis.Redis, service: str) -> None:
    gate = _gate(service, "100/s:100:conc=2")

    assert gate.hold(service, "", "a", 30) and gate.hold(service, "", "b", 30)
    assert not gate.hold(service, "", "c", 30)
    gate.release(service, "", "a")
    assert gate.hold(service, "", "c", 30)
    assert client.zcard(call_slot_key(service)) == 2


def test_a_dead_holder_s_slot_frees_itself_when_its_lease_ends(service: str) -> None:
    gate = _gate(service, "100/s:100:conc=1")

    assert gate.hold(service, "", "died-mid-call", 0.2)  # and never released
    assert not gate.hold(service, "", "next", 30)
    time.sleep(0.3)
    assert gate.hold(service, "", "next", 30)


def test_a_service_without_conc_takes_no_slot(client: redis.Redis, service: str) -> None:
    gate = RedisRateGate(redis_client, {service: RateSpec(60.0, 5, False)})

    assert all(gate.hold(service, "", f"h{n}", 30) for n in range(10))
    assert client.exists(call_slot_key(service)) == 0


# --- several processes ------------------------------------------------------------------------

CALLS_PER_THREAD = 4
THREADS = 3
PROCESSES = 2
QUOTA = 9
CONC = 2
CALL_SECONDS = 0.15


def _calls_in_child(service: str, entry: str, results: Queue[tuple[Any, ...]]) -> None:
    """THREADS threads each try CALLS_PER_THREAD paced calls; report (start, end) or 'limited'."""
    from tests.support import apply_environment

    apply_environment({})
    gate = _gate(service, entry)
    outcomes: list[tuple[float, float] | str] = []
    lock = threading.Lock()

    def run() -> None:
        for _ in range(CALLS_PER_THREAD):
            try:
                with paced(gate, service, max_wait=5.0, lease_seconds=30):
                    start = time.time()
                    time.sleep(CALL_SECONDS)
                    outcome: tuple[float, float] | str = (start, time.time())
            except RateLimited:
                outcome = "limited"
            with lock:
                outcomes.append(outcome)

    threads = [threading.Thread(target=run) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put(tuple(outcomes))


def _max_overlap(spans: list[tuple[float, float]]) -> int:
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = peak = 0
    for _, step in events:  # an end sorts before a start at the same instant
        running += step
        peak = max(peak, running)
    return peak


def test_processes_share_one_daily_quota_and_one_conc_bound(service: str) -> None:
    # Given a quota of 9 calls a day and at most 2 in flight, and two processes
    # of three threads each trying 4 calls (24 attempts, 6 at once)
    context = multiprocessing.get_context("spawn")  # fresh interpreters, as workers are
    results: Queue[tuple[Any, ...]] = context.Queue()
    entry = f"{QUOTA}/day:conc={CONC}"
    children = [
        context.Process(target=_calls_in_child, args=(service, entry, results))
        for _ in range(PROCESSES)
    ]
    # When they all call at once
    for child in children:
        child.start()
    outcomes = [item for _ in children for item in results.get(timeout=120)]
    for child in children:
        child.join(timeout=30)
    assert [child.exitcode for child in children] == [0] * PROCESSES

    # Then exactly the quota's calls ran, the rest were deferred, and never more
    # than CONC ran at once across both processes
    spans = [span for span in outcomes if isinstance(span, tuple)]
    assert len(outcomes) == PROCESSES * THREADS * CALLS_PER_THREAD
    assert len(spans) == QUOTA
    assert _max_overlap(spans) == CONC


# --- worker processes -------------------------------------------------------------------------


def test_two_workers_share_the_preflight_daily_quota(
    service_env: dict[str, str], tmp_path: Path, isolated_redis: Callable[[int], str]
) -> None:
    # Given preflight limited to 6 orders a day, and two worker processes
    env = {
        **service_env,
        "REDIS_URL": isolated_redis(QUOTA_REDIS_DB),
        "BATCH_RATE_LIMITS": "preflight=6/day",
        "BATCH_CHUNK_PREFLIGHT_OPTIMAL": "2",
    }
    batch_id = f"quota-{uuid.uuid4().hex[:8]}"
    workers = [
        spawn_worker(ALL_LANES, concurrency=1, name=name, env=env, log_path=tmp_path / name)
        for name in ("quota-a", "quota-b")
    ]
    try:
        # When ten orders are submitted
        submit_in_child(
            [{"id": batch_id, "priority": "high", "orders": make_orders(10, batch_id)}],
            env,
            tmp_path,
        )

        # Then six pass preflight and are delivered; four wait for tomorrow's quota
        def past_preflight() -> list[str]:
            return [s for s in item_states(batch_id).values() if s in PAST_PREFLIGHT]

        wait_until(lambda: past_preflight().count("DELIVERED") == 6, timeout=60)
        time.sleep(1.0)  # a seventh would have had time to get through
        assert len(past_preflight()) == 6
        quota = redis.Redis.from_url(env["REDIS_URL"])
        assert int(quota.hget(rate_quota_key("preflight"), "used") or 0) == 6
    finally:
        stop_workers(workers)
        from tasks.control import cancel_batch

        cancel_batch(batch_id)
