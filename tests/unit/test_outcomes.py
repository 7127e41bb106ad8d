"""Chunk outcomes: what an item's error becomes, the time-limit rules, and the summary."""

from __future__ import annotations

import pytest

from pipeline.errors import (
    DataCorruption,
    DataError,
    ErrorCategory,
    InvalidInput,
    QualityRejected,
    RateLimited,
    RewriteNeeded,
    TransientError,
)
from pipeline.outcomes import (
    Done,
    Failed,
    Halt,
    ItemOutcome,
    Retry,
    Rewrite,
    not_prepared,
    out_of_time,
    outcome_of_error,
    summarise,
)
from pipeline.retry_policy import RetryStrategy
from pipeline.stages.qc import may_rewrite


def test_a_transient_error_is_retried_and_pays_its_attempt() -> None:
    outcome = outcome_of_error(1, TransientError("timeout"), attempt=1, max_retries=3)
    assert isinstance(outcome, Retry) and outcome.spends_budget


def test_a_rate_limit_is_retried_at_the_servers_time_without_paying() -> None:
    outcome = outcome_of_error(1, RateLimited("429", retry_after=12), attempt=9, max_retries=0)
    assert isinstance(outcome, Retry)
    assert (outcome.delay, outcome.spends_budget) == (12.0, False)


def test_a_spent_budget_fails_the_order_with_its_class_and_category() -> None:
    outcome = outcome_of_error(1, TransientError("timeout"), attempt=4, max_retries=3)
    assert isinstance(outcome, Failed)
    assert (outcome.error_class, outcome.category) == ("TransientError", "TRANSIENT")
    assert not outcome.needs_manual_intervention


def test_a_data_error_fails_at_once_for_an_operator() -> None:
    outcome = outcome_of_error(1, DataError("bad profile"), attempt=1, max_retries=3)
    assert isinstance(outcome, Failed) and outcome.needs_manual_intervention
    assert outcome.output()["needs_manual_intervention"] is True


def test_a_permanent_error_keeps_its_details() -> None:
    error = InvalidInput("unknown publisher", details={"field": "publisher_domain"})
    outcome = outcome_of_error(1, error, attempt=1, max_retries=3)
    assert isinstance(outcome, Failed) and outcome.details == {"field": "publisher_domain"}


def test_a_critical_error_halts() -> None:
    assert isinstance(outcome_of_error(1, DataCorruption("x"), 1, 3), Halt)


def test_a_rewrite_request_is_a_rewrite_not_a_failure() -> None:
    error = RewriteNeeded("too short", details={"feedback": ["longer"]})
    outcome = outcome_of_error(1, error, attempt=1, max_retries=0)
    assert outcome == Rewrite(1, "too short", {"feedback": ["longer"]})
    assert outcome.output() == {"feedback": ["longer"], "rewrite": True}


def test_running_out_of_time_charges_only_the_order_that_was_running() -> None:
    left = out_of_time([(7, 1)], [8, 9], max_retries=3)
    assert [type(o) for o in left] == [Retry, Retry, Retry]
    assert [o.spends_budget for o in left if isinstance(o, Retry)] == [True, False, False]


def test_a_running_order_out_of_budget_fails_when_time_runs_out_again() -> None:
    left = out_of_time([(7, 4)], [], max_retries=3)
    assert isinstance(left[0], Failed) and left[0].error_class == "TimeoutError"


def test_running_out_of_time_while_preparing_charges_no_one() -> None:
    assert all(isinstance(o, Retry) and not o.spends_budget for o in not_prepared([1, 2], "slow"))


@pytest.mark.parametrize(
    ("rewritable", "done", "allowed", "expected"),
    [(True, 0, 2, True), (True, 2, 2, False), (False, 0, 2, False), (True, 0, 0, False)],
)
def test_qc_rewrites_while_fixable_and_budget_is_left(rewritable, done, allowed, expected) -> None:
    report = {"rewritable": rewritable}
    assert may_rewrite(report, rewrites_done=done, max_rewrites=allowed) is expected


def test_qc_rejection_beyond_the_rewrite_budget_is_a_failure() -> None:
    error = QualityRejected("word_count: too short", details={"rewritable": True})
    assert isinstance(outcome_of_error(1, error, 1, 3), Failed)


def test_the_summary_counts_only_what_the_ledger_recorded() -> None:
    outcomes: list[ItemOutcome] = [
        Done(1, {}),
        Done(2, {}),  # its lease passed to another run: not recorded
        Failed(3, "InvalidInput", "bad", *_permanent()),
        Rewrite(4, "short"),
        Retry(5, "429", 30.0, spends_budget=False),
        Retry(6, "timeout", 2.0),
        Halt(7, "corrupt"),
    ]

    summary = summarise(outcomes, recorded={1, 3, 4})

    assert summary.succeeded == (1,) and summary.failed == (3,) and summary.rewrites == (4,)
    assert summary.retry_ids == [5, 6] and summary.retry_delay == 30.0
    assert summary.refunded_retries == [5] and summary.spent_retries == [6]
    assert [h.item_id for h in summary.halts] == [7]
    assert summary.failure_classes == {"InvalidInput": 1}


def test_an_empty_chunk_summarises_to_nothing() -> None:
    summary = summarise([], recorded=set())
    assert summary.retry_ids == [] and summary.retry_delay == 0.0 and not summary.halts


def _permanent() -> tuple[ErrorCategory, RetryStrategy]:
    return ErrorCategory.PERMANENT, RetryStrategy.NONE
