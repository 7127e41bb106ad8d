"""Leased semaphores and token buckets against the session's real Redis, from several processes."""

from __future__ import annotations

import multiprocessing
import queue
import random
import time
import uuid
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from typing import Any, cast

import pytest
import redis

from metrics.keys import bench_key, rate_bucket_key, slot_key
from metrics.redis_client import redis_client
from pipeline.limits import RateSpec
from tasks.limits.rate import RedisRateGate, take
from tasks.limits.semaphore import (
    SlotClaim,
    acquire,
    holders,
    occupancy,
    reconcile,
    release,
    slot_keys,
)

pytestmark = pytest.mark.integration

LEASE = 30.0
CONTENTION_SECONDS = 2.0
GLOBAL_LIMIT = 3
CUSTOMER_LIMIT = 2


@pytest.fixture
def client(service_env: dict[str, str]) -> redis.Redis:
    return redis_client()


@pytest.fixture
def scope(redis_scope: str) -> str:
    """A name no other test uses (its keys are cleaned before and after)."""
    return redis_scope


def claim(holder: str, *caps: tuple[str, int]) -> SlotClaim:
    return SlotClaim(holder, tuple(key for key, _ in caps), tuple(limit for _, limit in caps))


# --- semaphores ---------------------------------------------------------------------------


def test_claims_are_granted_in_order_until_the_semaphore_is_full(
    client: redis.Redis, scope: str
) -> None:
    key = slot_key(scope, "global")

    granted = acquire(client, [claim(h, (key, 2)) for h in ("1:a", "2:a", "3:a")], LEASE)

    assert granted == [True, True, False]
    assert occupancy(client, [key]) == {key: 2}
    assert set(holders(client, key)) == {"1:a", "2:a"}


def test_a_claim_is_all_or_nothing_across_its_keys(client: redis.Redis, scope: str) -> None:
    # Given customer X's only slot taken, with room left globally
    everyone, x, y = (slot_key(scope, name) for name in ("global", "customer:x", "customer:y"))
    assert acquire(client, [claim("1:w", (everyone, 3), (x, 1))], LEASE) == [True]

    # When another X item and a Y item ask in one call
    granted = acquire(
        client, [claim("2:w", (everyone, 3), (x, 1)), claim("3:w", (everyone, 3), (y, 1))], LEASE
    )

    # Then the X item gets nothing, not even a global slot, and the Y item gets both
    assert granted == [False, True]
    assert set(holders(client, everyone)) == {"1:w", "3:w"}
    assert occupancy(client, [everyone, x, y]) == {everyone: 2, x: 1, y: 1}


def test_a_holder_that_acquires_again_renews_its_lease_without_a_second_slot(
    client: redis.Redis, scope: str
) -> None:
    key = slot_key(scope, "global")
    assert acquire(client, [claim("1:w", (key, 1))], 1.0) == [True]
    first_expiry = holders(client, key)["1:w"]

    assert acquire(client, [claim("1:w", (key, 1)), claim("1:w", (key, 1))], LEASE) == [True, True]

    assert holders(client, key)["1:w"] > first_expiry + LEASE - 2
    assert occupancy(client, [key]) == {key: 1}
    assert acquire(client, [claim("2:w", (key, 1))], LEASE) == [False]


def test_a_limit_of_zero_or_less_means_no_cap(client: redis.Redis, scope: str) -> None:
    everyone, free, unbounded = (slot_key(scope, name) for name in ("global", "free", "unbounded"))
    caps = ((everyone, 1), (free, 0), (unbounded, -1))

    granted = acquire(
        client, [claim("1:w", *caps), claim("2:w", *caps), claim("3:w", *caps[1:])], LEASE
    )

    # The only cap is the global one; uncapped keys are not even written
    assert granted == [True, False, True]
    assert client.exists(free, unbounded) == 0
    assert set(holders(client, everyone)) == {"1:w"}


def test_release_frees_the_slot(client: redis.Redis, scope: str) -> None:
    key = slot_key(scope, "global")
    first, second = claim("1:w", (key, 1)), claim("2:w", (key, 1))
    assert acquire(client, [first, second], LEASE) == [True, False]

    release(client, [first])

    assert acquire(client, [second], LEASE) == [True]
    assert set(holders(client, key)) == {"2:w"}


def test_releasing_nothing_makes_no_call() -> None:
    release(cast(redis.Redis, object()), [])  # any use of this "client" would raise


def test_an_expired_lease_frees_the_slot_without_a_release(client: redis.Redis, scope: str) -> None:
    key = slot_key(scope, "global")
    assert acquire(client, [claim("1:w", (key, 1))], 0.3) == [True]
    assert acquire(client, [claim("2:w", (key, 1))], 0.3) == [False]
    assert 0 < client.pttl(key) <= 600  # abandoned keys vanish after twice the lease

    time.sleep(0.5)

    assert occupancy(client, [key]) == {key: 0}
    assert acquire(client, [claim("2:w", (key, 1))], LEASE) == [True]
    assert set(holders(client, key)) == {"2:w"}


def test_reconcile_removes_dead_and_expired_holders_and_keeps_live_ones(
    client: redis.Redis, scope: str
) -> None:
    # Given a live and a dead holder on two keys, and a holder whose lease ran out
    everyone, x = slot_key(scope, "global"), slot_key(scope, "customer:x")
    caps = ((everyone, 10), (x, 10))
    assert acquire(client, [claim("1:w", *caps), claim("2:w", *caps)], LEASE) == [True, True]
    assert acquire(client, [claim("3:w", (everyone, 10))], 0.2) == [True]
    time.sleep(0.4)
    asked: list[str] = []

    def is_live(holder: str) -> bool:
        asked.append(holder)
        return holder != "2:w"

    # When the sweeper reconciles against the ledger
    removed = reconcile(client, is_live, pattern=slot_key(scope, "*"))

    # Then the dead holder left both keys, the expired one left too, the live one stays
    assert removed == 3
    assert holders(client, everyone).keys() == {"1:w"}
    assert holders(client, x).keys() == {"1:w"}
    assert sorted(asked) == ["1:w", "2:w"]  # once per holder; expired ones need no question
    assert slot_keys(client, pattern=slot_key(scope, "*")) == sorted([everyone, x])


def _contend_for_slots(
    url: str, keys: dict[str, str], barrier: Barrier, results: Queue[tuple[int, ...]]
) -> None:
    """Child process: take and give back slots for a while, counting who is inside."""
    client = redis.Redis.from_url(url)
    rng = random.Random()
    holder = f"{uuid.uuid4().hex}:writing"
    grants = denials = peak_global = peak_customer = 0
    barrier.wait(timeout=60)
    deadline = time.monotonic() + CONTENTION_SECONDS
    while time.monotonic() < deadline:
        customer = rng.choice(["x", "y"])
        slots = claim(holder, (keys["global"], GLOBAL_LIMIT), (keys[customer], CUSTOMER_LIMIT))
        if not acquire(client, [slots], LEASE)[0]:
            denials += 1
            continue
        grants += 1
        peak_global = max(peak_global, int(client.incr(keys["inside"])))
        peak_customer = max(peak_customer, int(client.incr(keys[f"inside-{customer}"])))
        time.sleep(0.001)
        client.decr(keys[f"inside-{customer}"])
        client.decr(keys["inside"])
        release(client, [slots])
    results.put((grants, denials, peak_global, peak_customer))


def test_slots_hold_under_contention_from_several_processes(
    service_env: dict[str, str], scope: str
) -> None:
    # Given four processes that want a global slot and one of two customers' slots
    keys = {
        "global": slot_key(scope, "global"),
        "x": slot_key(scope, "customer:x"),
        "y": slot_key(scope, "customer:y"),
        **{name: bench_key(f"{scope}:{name}") for name in ("inside", "inside-x", "inside-y")},
    }

    # When they take and give back slots as fast as they can
    outcomes = _run_children(_contend_for_slots, 4, service_env["REDIS_URL"], keys)

    # Then no more ever ran at once than the caps allow, and there was real contention
    grants, denials, peak_global, peak_customer = (
        list(column) for column in zip(*outcomes, strict=True)
    )
    assert max(peak_global) <= GLOBAL_LIMIT
    assert max(peak_customer) <= CUSTOMER_LIMIT
    assert sum(grants) > 50
    assert sum(denials) > 0


# --- token buckets ------------------------------------------------------------------------


def _take_tokens(url: str, key: str, barrier: Barrier, results: Queue[tuple[float, ...]]) -> None:
    """Child process: take tokens from a 10/s bucket (burst 5) as fast as it can."""
    client = redis.Redis.from_url(url)
    grants = 0
    barrier.wait(timeout=60)
    started = time.time()
    while time.time() < started + CONTENTION_SECONDS:
        if take(client, key, per_minute=600, burst=5) == 0.0:
            grants += 1
    results.put((grants, started, time.time()))


def test_a_bucket_shared_by_two_processes_keeps_the_rate(
    service_env: dict[str, str], scope: str
) -> None:
    key = rate_bucket_key(scope)

    outcomes = _run_children(_take_tokens, 2, service_env["REDIS_URL"], key)

    total = sum(grants for grants, _, _ in outcomes)
    elapsed = max(end for _, _, end in outcomes) - min(start for _, start, _ in outcomes)
    assert total <= 5 + 10 * elapsed + 2
    assert total >= 10 * elapsed * 0.6


def test_an_empty_bucket_says_how_long_to_wait_and_takes_nothing(
    client: redis.Redis, scope: str
) -> None:
    # Given a bucket of 1/s with both of its tokens taken
    key = rate_bucket_key(scope)
    assert [take(client, key, per_minute=60, burst=2) for _ in range(2)] == [0.0, 0.0]

    # When it is asked twice more at once
    first_wait = take(client, key, per_minute=60, burst=2)
    second_wait = take(client, key, per_minute=60, burst=2)

    # Then both say about one second: the first refusal took nothing
    assert 0.8 < first_wait <= 1.0
    assert 0.8 < second_wait <= first_wait
    assert float(client.hget(key, "tokens") or "nan") < 1
    assert 0 < client.pttl(key) <= 2000 + 1000
    time.sleep(second_wait + 0.05)
    assert take(client, key, per_minute=60, burst=2) == 0.0


def test_a_cost_above_the_burst_is_refused(client: redis.Redis, scope: str) -> None:
    with pytest.raises(ValueError, match="cost"):
        take(client, rate_bucket_key(scope), per_minute=60, burst=2, cost=3)
    with pytest.raises(ValueError, match="per_minute"):
        take(client, rate_bucket_key(scope), per_minute=0, burst=2)


# How a gate admits, refuses and keys its buckets is the contract every gate passes
# (tests/contracts/test_rate_gate_contract.py); here, which Redis keys hold the buckets.


def test_the_gate_names_a_bucket_per_key_or_per_service(client: redis.Redis, scope: str) -> None:
    per_key, shared = f"{scope}-delivery", f"{scope}-writer"
    gate = RedisRateGate(
        redis_client,
        {per_key: RateSpec(60, 1, per_key=True), shared: RateSpec(60, 1, per_key=False)},
    )

    for service in (per_key, shared):
        for domain in ("a.example", "b.example"):
            gate.wait_seconds(service, domain)

    assert (
        client.exists(rate_bucket_key(per_key, "a.example"), rate_bucket_key(per_key, "b.example"))
        == 2
    )
    assert client.exists(rate_bucket_key(shared)) == 1
    assert client.exists(rate_bucket_key(shared, "a.example")) == 0


def test_the_gate_keeps_no_bucket_for_a_service_without_a_spec(
    client: redis.Redis, scope: str
) -> None:
    gate = RedisRateGate(redis_client, {})

    gate.wait_seconds(scope, "a.example")

    assert client.exists(rate_bucket_key(scope), rate_bucket_key(scope, "a.example")) == 0


# --- helpers ------------------------------------------------------------------------------


def _run_children(target: Any, count: int, *args: Any) -> list[tuple[Any, ...]]:
    """Run `target(*args, barrier, results)` in `count` fresh interpreters; their results."""
    context = multiprocessing.get_context("spawn")  # a fresh interpreter, as a worker is
    barrier = context.Barrier(count)
    results: Queue[tuple[Any, ...]] = context.Queue()
    children = [
        context.Process(target=target, args=(*args, barrier, results)) for _ in range(count)
    ]
    for child in children:
        child.start()
    try:
        outcomes = [_next_result(results, children) for _ in children]
    finally:
        for child in children:
            child.join(timeout=30)
    assert [child.exitcode for child in children] == [0] * count
    return outcomes


def _next_result(results: Queue[tuple[Any, ...]], children: list[Any]) -> tuple[Any, ...]:
    """The next child's result; fail at once when a child died instead of waiting it out."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            return results.get(timeout=0.5)
        except queue.Empty:
            crashed = [child.exitcode for child in children if child.exitcode not in (None, 0)]
            assert not crashed, f"a child process failed with exit code {crashed[0]}"
    raise TimeoutError("the child processes did not report within 120 s")
