"""The rate gate contract (``pipeline.limits.RateGate``), run against every gate.

* ``none``: :class:`NoRateGate`, the gate when no limits are configured (in memory).
* ``redis``: :class:`RedisRateGate` over the session's real Redis (token buckets in
  Lua; fakeredis would need ``lupa`` for the script, which is not installed).

Every gate lets a service without a limit go at once. A gate that enforces
limits (``BATCH_RATE_LIMITS``) never admits more than its bucket allows in any
window, takes nothing when it refuses, keeps one bucket per key or per service
as its spec says, and its waits reach the pipeline through :func:`pace` as
:class:`RateLimited` (deferred without spending an attempt) when too long.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable, Iterator, Mapping

import pytest

from pipeline.classify import categorize
from pipeline.errors import ErrorCategory, RateLimited
from pipeline.limits import NoRateGate, RateGate, RateSpec
from pipeline.pacing import pace

GateFactory = Callable[[Mapping[str, RateSpec]], RateGate]

#: A refill of ten tokens a second keeps real waits short.
PER_MINUTE = 600.0
PER_SECOND = PER_MINUTE / 60
TOLERANCE = 1  # a call's moment, taken here, trails the gate's own clock slightly


def _redis_gates(request: pytest.FixtureRequest, service: str) -> Iterator[GateFactory]:
    request.getfixturevalue("service_env")
    from metrics.redis_client import redis_client
    from tasks.limits.rate import RedisRateGate

    def clean() -> None:
        for key in redis_client().scan_iter(match=f"*{service}*"):
            redis_client().delete(key)

    clean()
    try:
        yield lambda specs: RedisRateGate(redis_client, specs)
    finally:
        clean()


def _no_rate_gates() -> Iterator[GateFactory]:
    def build(specs: Mapping[str, RateSpec]) -> RateGate:
        assert not specs, "NoRateGate is the gate without limits"
        return NoRateGate()

    yield build


@pytest.fixture()
def service() -> str:
    """A service name no other test uses (Redis buckets are named after it)."""
    return f"contract-{uuid.uuid4().hex[:12]}"


def _gates(request: pytest.FixtureRequest, service: str) -> Iterator[GateFactory]:
    if request.param == "redis":
        yield from _redis_gates(request, service)
    else:
        yield from _no_rate_gates()


REDIS = pytest.param("redis", id="redis", marks=pytest.mark.integration)


@pytest.fixture(params=[pytest.param("none", id="none"), REDIS])
def any_gate(request: pytest.FixtureRequest, service: str) -> Iterator[GateFactory]:
    """Every gate, built without limits."""
    yield from _gates(request, service)


@pytest.fixture(params=[REDIS])
def limiting_gate(request: pytest.FixtureRequest, service: str) -> Iterator[GateFactory]:
    """Every gate that enforces ``BATCH_RATE_LIMITS`` specs."""
    yield from _gates(request, service)


class Sleeps(list[float]):
    """Records the waits :func:`pace` asks for, and sleeps them."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)
        time.sleep(seconds)


# --- every gate ----------------------------------------------------------------------------


def test_a_service_without_a_limit_always_goes(any_gate: GateFactory, service: str) -> None:
    gate = any_gate({})

    waits = [gate.wait_seconds(service, key) for key in ("", "a.example", "a.example", "")]

    assert waits == [0.0, 0.0, 0.0, 0.0]


def test_pace_never_sleeps_for_a_service_without_a_limit(
    any_gate: GateFactory, service: str
) -> None:
    sleeps = Sleeps()

    for _ in range(5):
        pace(any_gate({}), service, "a.example", max_wait=0.0, sleep=sleeps)

    assert sleeps == []


# --- gates that enforce limits -------------------------------------------------------------


def test_a_full_bucket_admits_its_burst_then_names_the_wait(
    limiting_gate: GateFactory, service: str
) -> None:
    gate = limiting_gate({service: RateSpec(60, burst=3, per_key=False)})

    waits = [gate.wait_seconds(service) for _ in range(4)]

    assert waits[:3] == [0.0, 0.0, 0.0]
    assert 0.0 < waits[3] <= 1.0  # one token a second


def test_a_refusal_takes_nothing(limiting_gate: GateFactory, service: str) -> None:
    # Given an empty bucket
    gate = limiting_gate({service: RateSpec(PER_MINUTE, burst=1, per_key=False)})
    assert gate.wait_seconds(service) == 0.0

    # When it is asked twice more at once
    first, second = gate.wait_seconds(service), gate.wait_seconds(service)

    # Then both name about one token's refill: the first refusal took nothing
    assert 0.0 < second <= first <= 1 / PER_SECOND
    time.sleep(second + 0.02)
    assert gate.wait_seconds(service) == 0.0


def test_no_window_admits_more_than_the_burst_and_the_refill(
    limiting_gate: GateFactory, service: str
) -> None:
    # Given a bucket of 3 refilled at 10 a second, asked as fast as a caller can for 0.6 s
    burst = 3
    gate = limiting_gate({service: RateSpec(PER_MINUTE, burst=burst, per_key=False)})
    admitted: list[float] = []
    deadline = time.monotonic() + 0.6
    while time.monotonic() < deadline:
        if gate.wait_seconds(service) == 0.0:
            admitted.append(time.monotonic())

    # Then in any window of T seconds it admitted at most burst + T * rate calls
    for first, last in itertools.combinations(range(len(admitted)), 2):
        window = admitted[last] - admitted[first]
        assert last - first + 1 <= burst + window * PER_SECOND + TOLERANCE, (first, last)
    # ... and it did refill: more than the burst went through
    assert burst < len(admitted) <= burst + 0.6 * PER_SECOND + TOLERANCE


def test_a_per_key_limit_gives_each_key_its_own_bucket(
    limiting_gate: GateFactory, service: str
) -> None:
    gate = limiting_gate({service: RateSpec(60, burst=1, per_key=True)})

    assert gate.wait_seconds(service, "a.example") == 0.0
    assert gate.wait_seconds(service, "a.example") > 0.0
    assert gate.wait_seconds(service, "b.example") == 0.0


def test_a_shared_limit_gives_every_key_one_bucket(
    limiting_gate: GateFactory, service: str
) -> None:
    gate = limiting_gate({service: RateSpec(60, burst=1, per_key=False)})

    assert gate.wait_seconds(service, "a.example") == 0.0
    assert gate.wait_seconds(service, "b.example") > 0.0


def test_pace_sleeps_a_short_wait_then_goes(limiting_gate: GateFactory, service: str) -> None:
    gate = limiting_gate({service: RateSpec(PER_MINUTE, burst=1, per_key=False)})
    sleeps = Sleeps()

    pace(gate, service, max_wait=1.0, sleep=sleeps)
    pace(gate, service, max_wait=1.0, sleep=sleeps)

    assert len(sleeps) >= 1
    assert 0.0 < sum(sleeps) <= 1.0


def test_pace_defers_a_long_wait_as_rate_limited(limiting_gate: GateFactory, service: str) -> None:
    # Given a bucket that refills one token a second, just emptied
    gate = limiting_gate({service: RateSpec(60, burst=1, per_key=False)})
    sleeps = Sleeps()
    pace(gate, service, max_wait=0.1, sleep=sleeps)

    # When the next call may wait only a tenth of a second
    with pytest.raises(RateLimited) as raised:
        pace(gate, service, max_wait=0.1, sleep=sleeps)

    # Then it waited for nothing and the pipeline is told how long to defer the item
    assert sleeps == []
    assert categorize(raised.value) is ErrorCategory.RATE_LIMIT
    assert raised.value.retry_after is not None and 0.1 < raised.value.retry_after <= 1.0
