"""The retry policy table: what each error category does to an item."""

from __future__ import annotations

import errno

import pytest

from pipeline.errors import (
    ConfigurationError,
    CustomerSuspended,
    DataCorruption,
    DataError,
    DuplicateOrder,
    InvalidInput,
    PolicyViolation,
    RateLimited,
    ResourceError,
    SecurityBreach,
    TransientError,
)
from pipeline.retry_policy import RetryStrategy, decide


@pytest.mark.parametrize(
    "error",
    [InvalidInput("x"), PolicyViolation("x"), CustomerSuspended("x"), DuplicateOrder("x")],
    ids=lambda e: type(e).__name__,
)
def test_permanent_errors_fail_at_once_without_retry(error: Exception) -> None:
    decision = decide(error, attempt=1, max_retries=5)
    assert (decision.action, decision.strategy) == ("fail", RetryStrategy.NONE)
    assert not decision.needs_manual_intervention


@pytest.mark.parametrize(
    "error", [ConfigurationError("x"), DataError("x"), KeyError("bug")], ids=str
)
def test_configuration_and_data_errors_fail_for_manual_intervention(error: Exception) -> None:
    decision = decide(error, attempt=1, max_retries=5)
    assert decision.action == "fail"
    assert decision.needs_manual_intervention


@pytest.mark.parametrize("error", [DataCorruption("x"), SecurityBreach("x")], ids=str)
def test_critical_errors_halt_everything(error: Exception) -> None:
    assert decide(error, attempt=1, max_retries=0).action == "halt"


def test_transient_errors_retry_immediately_then_back_off_exponentially() -> None:
    delays = [decide(TimeoutError("t"), attempt=n, max_retries=5) for n in (1, 2, 3, 4)]
    assert [d.action for d in delays] == ["retry"] * 4
    assert [d.delay for d in delays] == [0.0, 2.0, 4.0, 8.0]
    assert delays[0].strategy is RetryStrategy.IMMEDIATE
    assert delays[1].strategy is RetryStrategy.EXPONENTIAL


def test_transient_errors_fail_once_the_budget_is_spent() -> None:
    assert decide(TransientError("t"), attempt=3, max_retries=3).action == "retry"
    assert decide(TransientError("t"), attempt=4, max_retries=3).action == "fail"
    assert decide(ConnectionError("c"), attempt=1, max_retries=0).action == "fail"


def test_resource_errors_back_off_linearly() -> None:
    disk_full = OSError(errno.ENOSPC, "No space left on device")
    delays = [decide(disk_full, attempt=n, max_retries=5).delay for n in (1, 2, 3)]
    assert delays == [10.0, 20.0, 30.0]
    assert decide(ResourceError("oom"), attempt=1, max_retries=5).strategy is RetryStrategy.LINEAR


def test_rate_limits_honour_retry_after_and_spend_no_budget() -> None:
    decision = decide(RateLimited("429", retry_after=42), attempt=99, max_retries=1)
    assert (decision.action, decision.delay) == ("retry", 42.0)
    assert decision.strategy is RetryStrategy.SCHEDULED
    assert decision.spends_budget is False


def test_rate_limits_without_retry_after_back_off_exponentially() -> None:
    assert decide(RateLimited("429"), attempt=3, max_retries=0).delay == 8.0
