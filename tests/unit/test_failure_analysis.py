"""Failure analysis' pure core: the counts, each pattern's threshold, each recommendation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.errors import ErrorCategory
from pipeline.failure_advice import recommend
from pipeline.failure_analysis import (
    analyse,
    consecutive_orders,
    dominant_group,
    find_patterns,
    recurring_reason,
    time_cluster,
)
from pipeline.failure_facts import (
    ConsecutiveRun,
    FailedDocument,
    FailureFacts,
    GroupCount,
    ReasonCount,
    Thresholds,
    TimeBucket,
    category_of_class,
    recoverability,
)

T = Thresholds()
START = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
TRANSIENT, PERMANENT = ErrorCategory.TRANSIENT, ErrorCategory.PERMANENT


def reason(code: str, failures: int, **fields: Any) -> ReasonCount:
    values: dict[str, Any] = {
        "stage": "delivery",
        "category": TRANSIENT,
        "error_class": "TransientError",
    }
    values.update(fields)
    return ReasonCount(code=code, failures=failures, **values)


def document(order_id: str, code: str, **fields: Any) -> FailedDocument:
    values: dict[str, Any] = {
        "stage": "delivery",
        "category": TRANSIENT,
        "error_class": "TransientError",
        "reason": f"{code} happened",
        "attempts": 2,
        "last_good_stage": "qc",
        "customer_id": "acme",
        "publisher_domain": "news.example",
    }
    values.update(fields)
    return FailedDocument(order_id=order_id, code=code, **values)


def facts(*reasons: ReasonCount, total: int = 10, **fields: Any) -> FailureFacts:
    return FailureFacts(batch_id="b1", total_orders=total, reasons=reasons, **fields)


# --- categories ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("category", "needs"),
    [
        (ErrorCategory.TRANSIENT, "recoverable"),
        (ErrorCategory.RESOURCE, "recoverable"),
        (ErrorCategory.RATE_LIMIT, "recoverable"),
        (ErrorCategory.CONFIGURATION, "manual"),
        (ErrorCategory.DATA, "manual"),
        (ErrorCategory.CRITICAL, "manual"),
        (ErrorCategory.PERMANENT, "permanent"),
    ],
)
def test_recoverability_follows_the_retry_policy(category: ErrorCategory, needs: str) -> None:
    assert recoverability(category) == needs


@pytest.mark.parametrize(
    ("error_class", "category"),
    [
        ("QualityRejected", ErrorCategory.PERMANENT),
        ("ConfigurationError", ErrorCategory.CONFIGURATION),
        ("DataCorruption", ErrorCategory.CRITICAL),
        ("TimeoutError", ErrorCategory.TRANSIENT),
        ("KeyError", ErrorCategory.DATA),
    ],
)
def test_a_failure_without_its_output_is_categorised_by_its_class(
    error_class: str, category: ErrorCategory
) -> None:
    stored = ReasonCount.stored(None, None, error_class, None, 1)
    assert (stored.stage, stored.category) == ("unknown", category)
    assert category_of_class(error_class) == category


def test_a_stored_failure_keeps_its_own_category_and_code() -> None:
    stored = ReasonCount.stored("qc", "PERMANENT", "QualityRejected", "word_count", 4)
    assert stored == ReasonCount("qc", PERMANENT, "QualityRejected", "word_count", 4)


# --- the counts ---------------------------------------------------------------------------


def test_the_report_counts_every_dimension_from_the_reasons() -> None:
    report = analyse(
        facts(
            reason("webhook_status_503", 3),
            reason("word_count", 2, stage="qc", category=PERMANENT, error_class="QualityRejected"),
            reason(
                "publisher_endpoint_missing",
                1,
                category=ErrorCategory.CONFIGURATION,
                error_class="ConfigurationError",
            ),
            total=8,
            publishers=(GroupCount("news.example", 4, 5), GroupCount("blog.example", 2, 3)),
            customers=(GroupCount("acme", 6, 8),),
        )
    )

    assert report["total_failures"] == 6
    assert (report["recoverable_count"], report["manual_count"], report["permanent_count"]) == (
        3,
        1,
        2,
    )
    assert report["error_rate"] == 75.0
    assert report["errors_by_code"] == {
        "webhook_status_503": 3,
        "word_count": 2,
        "publisher_endpoint_missing": 1,
    }
    assert report["errors_by_type"] == {
        "TransientError": 3,
        "QualityRejected": 2,
        "ConfigurationError": 1,
    }
    assert report["errors_by_category"] == {"TRANSIENT": 3, "PERMANENT": 2, "CONFIGURATION": 1}
    assert report["by_stage"] == {"delivery": 4, "qc": 2}
    assert report["by_publisher"] == {"news.example": 4, "blog.example": 2}
    assert report["by_customer"] == {"acme": 6}


def test_a_batch_without_failures_has_an_empty_report() -> None:
    report = analyse(facts(total=5, publishers=(GroupCount("news.example", 0, 5),)))
    assert report["total_failures"] == 0 and report["error_rate"] == 0.0
    assert report["by_publisher"] == {}
    assert report["patterns"] == [] and report["recommendations"] == []


def test_a_failed_document_says_whether_recover_takes_it() -> None:
    listed = document("o1", "webhook_status_503").to_json()
    assert listed["recoverable"] is True and listed["needs"] == "recoverable"
    refused = document("o2", "word_count", category=PERMANENT).to_json()
    assert refused["recoverable"] is False and refused["needs"] == "permanent"


# --- patterns -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("others", "found"),
    [((3,), True), ((2, 2), False), ((), True), ((1,), True)],
    ids=["half", "under-half", "alone", "most"],
)
def test_a_recurring_reason_needs_half_the_failures(others: tuple[int, ...], found: bool) -> None:
    spread = [reason(f"x_other_{n}", count) for n, count in enumerate(others)]
    pattern = recurring_reason(facts(reason("webhook_status_503", 3), *spread), T)
    assert (pattern is not None) == found
    if pattern:
        assert pattern.evidence["code"] == "webhook_status_503"
        assert pattern.evidence["failures"] == 3


def test_two_failures_are_not_yet_a_recurring_reason() -> None:
    assert recurring_reason(facts(reason("webhook_status_503", 2)), T) is None


def test_a_publisher_dominates_when_it_fails_more_often_than_the_rest() -> None:
    many = facts(
        reason("x", 6),
        total=20,
        publishers=(GroupCount("bad.example", 5, 6), GroupCount("good.example", 1, 14)),
    )
    pattern = dominant_group("publisher", many.publishers, many, T)
    assert pattern is not None
    assert pattern.evidence["publisher"] == "bad.example"
    assert pattern.evidence["failure_rate"] == pytest.approx(83.33)
    assert pattern.evidence["others_failure_rate"] == pytest.approx(7.14)


def test_a_large_publisher_failing_at_the_common_rate_does_not_dominate() -> None:
    even = facts(
        reason("x", 6),
        total=30,
        publishers=(GroupCount("big.example", 4, 20), GroupCount("small.example", 2, 10)),
    )
    assert dominant_group("publisher", even.publishers, even, T) is None


def test_the_only_publisher_of_a_batch_does_not_dominate_it() -> None:
    only = facts(reason("x", 4), total=8, publishers=(GroupCount("news.example", 4, 8),))
    assert dominant_group("publisher", only.publishers, only, T) is None


def _buckets(*counts: int) -> tuple[TimeBucket, ...]:
    return tuple(
        TimeBucket(n, START + timedelta(seconds=10 * i), START + timedelta(seconds=10 * i + 5))
        for i, n in enumerate(counts)
        if n
    )


def test_failures_bunched_in_one_tenth_of_a_long_run_are_a_time_cluster() -> None:
    bunched = facts(reason("x", 10), run_seconds=100.0, buckets=_buckets(1, 8, 1))
    pattern = time_cluster(bunched, T)
    assert pattern is not None
    assert pattern.evidence["failures_in_window"] == 8
    assert pattern.evidence["window_seconds"] == 10.0


@pytest.mark.parametrize(
    ("run_seconds", "counts"),
    [(100.0, (3, 3, 4)), (20.0, (0, 10)), (100.0, (4,))],
    ids=["spread", "run-too-short", "too-few"],
)
def test_no_time_cluster_when_spread_short_or_few(run_seconds: float, counts: tuple[int]) -> None:
    spread = facts(reason("x", sum(counts)), run_seconds=run_seconds, buckets=_buckets(*counts))
    assert time_cluster(spread, T) is None


def test_a_run_of_neighbouring_failures_is_reported_unless_all_failed() -> None:
    run = ConsecutiveRun(6, 10, 15, "o-10", "o-15")
    assert consecutive_orders(facts(reason("x", 6), total=20, longest_run=run), T) is not None
    assert consecutive_orders(facts(reason("x", 6), total=6, longest_run=run), T) is None


# --- recommendations ----------------------------------------------------------------------


def _kinds(report_facts: FailureFacts) -> dict[str, dict[str, Any]]:
    made = recommend(report_facts, find_patterns(report_facts, T), T)
    return {r.kind: r.to_json() for r in made}


def test_delivery_outage_recommends_checking_the_network_and_recovering() -> None:
    outage = facts(
        reason("webhook_status_503", 4),
        total=8,
        publishers=(GroupCount("news.example", 4, 5), GroupCount("fine.example", 0, 3)),
        documents=tuple(document(f"o{n}", "webhook_status_503") for n in range(4)),
    )
    kinds = _kinds(outage)
    assert kinds["network"]["trigger"]["publishers"] == {"news.example": 4}
    assert kinds["network"]["command"] == "batchline recover b1"
    assert kinds["recover"]["trigger"]["recoverable_count"] == 4
    assert kinds["recover"]["command"] == "batchline recover b1"
    assert kinds["dominant_publisher"]["command"] == "batchline catalog show"
    assert kinds["recurring_reason"]["command"] == "batchline order o0 --batch b1"


def test_more_than_half_failed_recommends_reviewing_the_input() -> None:
    kinds = _kinds(facts(reason("x", 6), total=10, documents=(document("o1", "x"),)))
    assert kinds["high_error_rate"]["trigger"] == {"error_rate": 60.0, "threshold": 50.0}
    assert kinds["high_error_rate"]["command"] == "batchline order o1 --batch b1"
    assert "common cause is over" in kinds["high_error_rate"]["message"]  # transient ones
    refused = _kinds(facts(reason("x", 6, category=PERMANENT), total=10))
    assert "review the input data" in refused["high_error_rate"]["message"]
    assert "high_error_rate" not in _kinds(facts(reason("x", 5), total=10))


def test_timeouts_name_the_setting_that_bounds_them() -> None:
    kinds = _kinds(facts(reason("webhook_timeout", 1), reason("writer_timeout", 1), total=50))
    assert kinds["timeouts"]["trigger"]["settings"] == [
        "DELIVERY_TIMEOUT_SECONDS",
        "WRITER_TIMEOUT_SECONDS",
    ]


def test_rate_limits_recommend_a_low_priority_recovery() -> None:
    limited = reason("webhook_status_429", 1, category=ErrorCategory.RATE_LIMIT)
    assert _kinds(facts(limited, total=50))["rate_limits"]["command"] == (
        "batchline recover b1 --priority low"
    )


def test_catalog_failures_recommend_an_import_then_naming_refused_orders() -> None:
    language = {"stage": "preflight", "category": PERMANENT, "error_class": "InvalidInput"}
    missing = {"category": ErrorCategory.CONFIGURATION, "error_class": "ConfigurationError"}
    kinds = _kinds(
        facts(
            reason("publisher_language", 1, **language),
            reason("publisher_endpoint_missing", 1, **missing),
            total=50,
            documents=(
                document("o1", "publisher_language", **language),
                document("o2", "publisher_endpoint_missing", **missing),
            ),
        )
    )
    assert kinds["catalog"]["command"] == (
        "batchline catalog import CATALOG_FILE && batchline recover b1 --all --order o1"
    )
    assert kinds["manual"]["command"] == "batchline recover b1 --all"
    assert "invalid_input" not in kinds  # a catalog problem, not the order's


def test_refused_orders_and_qc_rejections_have_their_own_advice() -> None:
    refused = {"stage": "preflight", "category": PERMANENT, "error_class": "DuplicateOrder"}
    rejected = {"stage": "qc", "category": PERMANENT, "error_class": "QualityRejected"}
    kinds = _kinds(
        facts(
            reason("duplicate", 1, **refused),
            reason("word_count", 1, **rejected),
            total=50,
            documents=(document("o7", "duplicate", **refused),),
        )
    )
    assert kinds["invalid_input"]["command"] == "batchline order o7 --batch b1"
    assert kinds["quality"]["trigger"]["codes"] == {"word_count": 1}
    assert "recover" not in kinds and "manual" not in kinds


# --- properties ---------------------------------------------------------------------------

CODES = st.sampled_from(["webhook_status_503", "word_count", "duplicate", "writer_timeout"])
REASONS = st.lists(
    st.builds(
        ReasonCount,
        stage=st.sampled_from(["preflight", "writing", "qc", "delivery"]),
        category=st.sampled_from(list(ErrorCategory)),
        error_class=st.sampled_from(["TransientError", "InvalidInput", "QualityRejected"]),
        code=CODES,
        failures=st.integers(1, 50),
    ),
    max_size=8,
)


@given(REASONS, st.integers(0, 200))
def test_every_failure_is_counted_once_in_each_dimension(
    reasons: list[ReasonCount], extra: int
) -> None:
    total = sum(r.failures for r in reasons)
    report = analyse(facts(*reasons, total=total + extra))
    for key in ("errors_by_type", "errors_by_code", "errors_by_category", "by_stage"):
        assert sum(report[key].values()) == total
    needs = report["recoverable_count"] + report["manual_count"] + report["permanent_count"]
    assert needs == report["total_failures"] == total
    assert 0.0 <= report["error_rate"] <= 100.0


@given(REASONS)
def test_every_recommendation_has_a_trigger_and_a_batchline_command(
    reasons: list[ReasonCount],
) -> None:
    report = analyse(facts(*reasons, total=max(1, sum(r.failures for r in reasons))))
    for made in report["recommendations"]:
        assert made["trigger"]
        assert made["command"].startswith("batchline ")


@given(REASONS)
def test_a_recurring_reason_is_found_exactly_when_one_code_holds_half(
    reasons: list[ReasonCount],
) -> None:
    by_code: dict[str, int] = {}
    for r in reasons:
        by_code[r.code] = by_code.get(r.code, 0) + r.failures
    total = sum(by_code.values())
    top = max(by_code.values(), default=0)
    expected = top >= T.recurring_min and top / total >= T.recurring_share if total else False
    assert (recurring_reason(facts(*reasons, total=total), T) is not None) == expected
