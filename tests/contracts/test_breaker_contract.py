"""The circuit breaker contract, run against the in-memory rules and the Redis script.

``pipeline.breaker.MemoryBreaker`` is the reference; ``tasks.limits.breaker.RedisBreaker``
runs the same rules as one Lua call per decision on the session's real Redis
(fakeredis would need ``lupa`` for the script, which is not installed). Both must
pass every scenario of ``tests/unit/test_breaker.py``, with the clock passed in.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from pipeline.breaker import BreakerPolicy, MemoryBreaker
from tests.unit.test_breaker import POLICY, SCENARIOS, run_steps

BreakerFactory = Callable[[BreakerPolicy], object]


@pytest.fixture(params=["memory", "redis"])
def make_breaker(request: pytest.FixtureRequest) -> Iterator[BreakerFactory]:
    if request.param == "memory":
        yield MemoryBreaker
        return
    request.getfixturevalue("service_env")
    from metrics.keys import breaker_key
    from metrics.redis_client import redis_client
    from tasks.limits.breaker import RedisBreaker

    yield lambda policy: RedisBreaker(redis_client, policy)
    for key in redis_client().scan_iter(match=breaker_key("contract-*")):
        redis_client().delete(key)


@pytest.mark.parametrize("steps", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_breaker_contract(
    make_breaker: BreakerFactory, steps: list[tuple[str, float, str]]
) -> None:
    run_steps(make_breaker(POLICY), f"contract-{uuid.uuid4().hex[:8]}", steps)


def test_only_one_of_many_concurrent_callers_gets_the_probe(service_env: dict[str, str]) -> None:
    from metrics.keys import breaker_key
    from metrics.redis_client import redis_client
    from tasks.limits.breaker import RedisBreaker

    # Given an open circuit whose cool-down is over
    breaker = RedisBreaker(redis_client, POLICY)
    circuit = f"contract-{uuid.uuid4().hex[:8]}"
    for _ in range(POLICY.failures):
        breaker.failure(circuit, 100.0)
    # When sixteen workers ask at once
    probes: list[bool] = []
    start = threading.Barrier(16)

    def ask() -> None:
        start.wait()
        probes.append(breaker.admit(circuit, 106.0).probe)

    threads = [threading.Thread(target=ask) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then exactly one is let through
    assert probes.count(True) == 1
    redis_client().delete(breaker_key(circuit))


def test_redis_breaker_uses_the_server_clock_when_no_time_is_given(
    service_env: dict[str, str],
) -> None:
    from metrics.redis_client import redis_client
    from tasks.limits.breaker import RedisBreaker

    breaker = RedisBreaker(redis_client, BreakerPolicy(failures=1, window=10, cooldown=0.3))
    circuit = f"contract-{uuid.uuid4().hex[:8]}"
    view = breaker.failure(circuit)
    assert not breaker.admit(circuit).allowed
    assert abs(breaker.admit(circuit).retry_at - view.open_until) < 0.01
    time.sleep(0.35)
    assert breaker.admit(circuit).probe
    assert breaker.success(circuit).open_until == view.open_until
    assert breaker.admit(circuit).allowed
