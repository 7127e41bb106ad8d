"""The circuit breaker's state machine (``pipeline.breaker``): a table and properties."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.breaker import (
    BreakerPolicy,
    CircuitState,
    MemoryBreaker,
    counts_against,
    publisher_circuit,
)
from pipeline.errors import ErrorCategory

POLICY = BreakerPolicy(failures=3, window=10.0, cooldown=5.0)

# (step, time, expected): "f" a failure, "s" a success, "a+" / "a-" / "ap" an
# admission that lets the call go / refuses it / lets it go as the probe.
SCENARIOS = {
    "two failures keep it closed": [("f", 0, "closed"), ("f", 1, "closed"), ("a+", 2, "closed")],
    "three failures open it": [("f", 0, ""), ("f", 1, ""), ("f", 2, "open"), ("a-", 3, "open")],
    "a success in between starts the count again": [
        ("f", 0, ""),
        ("f", 1, ""),
        ("s", 2, "closed"),
        ("f", 3, ""),
        ("f", 4, "closed"),
    ],
    "failures outside the window do not add up": [
        ("f", 0, ""),
        ("f", 1, ""),
        ("f", 12, "closed"),
        ("f", 13, "closed"),
        ("f", 14, "open"),
    ],
    "after the cool-down one probe goes, the next waits": [
        ("f", 0, ""),
        ("f", 0, ""),
        ("f", 0, "open"),
        ("a-", 4.9, "open"),
        ("ap", 5, "half_open"),
        ("a-", 5.1, "half_open"),
    ],
    "the probe's success closes it": [
        ("f", 0, ""),
        ("f", 0, ""),
        ("f", 0, ""),
        ("ap", 5, ""),
        ("s", 6, "closed"),
        ("a+", 6, "closed"),
    ],
    "the probe's failure opens it for another cool-down": [
        ("f", 0, ""),
        ("f", 0, ""),
        ("f", 0, ""),
        ("ap", 5, ""),
        ("f", 6, "open"),
        ("a-", 10.9, "open"),
        ("ap", 11, "half_open"),
    ],
    "a prober that dies frees the probe after one cool-down": [
        ("f", 0, ""),
        ("f", 0, ""),
        ("f", 0, ""),
        ("ap", 5, ""),
        ("a-", 9.9, ""),
        ("ap", 10, "half_open"),
    ],
}


def run_steps(breaker: object, circuit: str, steps: list[tuple[str, float, str]]) -> None:
    """Drive ``breaker`` (memory or Redis) through ``steps`` and check each expectation."""
    for number, (step, now, expected) in enumerate(steps):
        where = f"step {number} ({step} at {now})"
        if step == "f":
            breaker.failure(circuit, now)  # type: ignore[attr-defined]
        elif step == "s":
            breaker.success(circuit, now)  # type: ignore[attr-defined]
        else:
            admission = breaker.admit(circuit, now)  # type: ignore[attr-defined]
            assert admission.allowed == (step != "a-"), where
            assert admission.probe == (step == "ap"), where
        if expected:
            view = breaker.view(circuit)  # type: ignore[attr-defined]
            assert view.state(now) == CircuitState(expected), where


@pytest.mark.parametrize("steps", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_breaker_follows_the_table(steps: list[tuple[str, float, str]]) -> None:
    run_steps(MemoryBreaker(POLICY), "writer", steps)


@given(st.lists(st.sampled_from("fsa"), max_size=40), st.integers(1, 6))
def test_at_most_one_probe_per_cool_down(steps: list[str], failures: int) -> None:
    breaker = MemoryBreaker(BreakerPolicy(failures=failures, window=100.0, cooldown=5.0))
    probes: list[float] = []
    for tick, step in enumerate(steps):
        now = tick * 0.5
        if step == "f":
            breaker.failure("c", now)
        elif step == "s":
            breaker.success("c", now)
        elif breaker.admit("c", now).probe:
            probes.append(now)
    assert all(later - earlier >= 5.0 for earlier, later in itertools.pairwise(probes))


@given(st.integers(1, 10))
def test_only_consecutive_failures_reaching_the_threshold_open_it(failures: int) -> None:
    breaker = MemoryBreaker(BreakerPolicy(failures=failures, window=100.0, cooldown=5.0))
    for tick in range(failures - 1):
        breaker.failure("c", float(tick))
        breaker.failure("c", float(tick))
        breaker.success("c", float(tick))  # every success restarts the count
    assert breaker.admit("c", 50.0).allowed
    for _ in range(failures):
        breaker.failure("c", 60.0)
    assert not breaker.admit("c", 60.0).allowed


def test_only_transient_failures_count() -> None:
    assert counts_against(ErrorCategory.TRANSIENT)
    others = set(ErrorCategory) - {ErrorCategory.TRANSIENT}
    assert not any(counts_against(category) for category in others)


def test_publisher_circuits_are_per_domain() -> None:
    assert publisher_circuit("a.example") != publisher_circuit("b.example")
