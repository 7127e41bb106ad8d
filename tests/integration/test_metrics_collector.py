"""BatchMetricsCollector against a real ledger and Redis: known figures, constant statements.

Most tests read a planted ledger of their own (``tests.support_metrics``), whose
every duration and wait is known; the last runs a real batch through the session's
workers and checks the collector against the failure analysis of the same batch.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from sqlalchemy import event

from cli.sample_orders import orders_built_to_fail
from metrics.collector import BatchMetricsCollector, UnknownBatch
from metrics.keys import error_bucket_key
from tests.integration.helpers import wait_for_final
from tests.support_metrics import own_ledger, plant_known_state

pytestmark = pytest.mark.integration

COLLECTOR_REDIS_DB = 3


@pytest.fixture()
def planted(service_env: dict[str, str], isolated_redis: Any) -> Iterator[dict[str, Any]]:
    """A collector over a planted ledger and Redis, with a statement counter on the engine."""
    client = redis.Redis.from_url(isolated_redis(COLLECTOR_REDIS_DB), decode_responses=True)
    with own_ledger(service_env) as (_url, engine):
        plant_known_state(engine, client)
        planted_hour = datetime.now(UTC)
        client.hset(error_bucket_key(planted_hour), mapping={"QualityRejected": 3})
        statements: list[str] = []
        event.listen(engine, "before_cursor_execute", _counter(statements))
        try:
            yield {
                "collector": BatchMetricsCollector(engine=engine, client=client),
                "statements": statements,
                "engine": engine,
                "bucket": f"{planted_hour:%Y%m%d%H}",
            }
        finally:
            client.close()


def _counter(statements: list[str]) -> Any:
    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    return count


def _statements_of(planted: dict[str, Any], call: Any, *args: Any, **kwargs: Any) -> int:
    planted["statements"].clear()
    call(*args, **kwargs)
    return len(planted["statements"])


def test_performance_report_of_a_finished_batch_has_its_known_figures(
    planted: dict[str, Any],
) -> None:
    report = planted["collector"].get_performance_report("k-done")

    assert report["batch"]["states"] == {"DELIVERED": 5}
    assert report["batch"]["status"] == "COMPLETED"
    assert report["batch"]["elapsed_s"] == pytest.approx(3600, abs=1)
    preflight, writing = report["stages"]["preflight"], report["stages"]["writing"]
    assert (preflight["runs"], preflight["ok"], preflight["failed"]) == (5, 5, 0)
    assert (preflight["p50_ms"], preflight["p95_ms"], preflight["max_ms"]) == (20, 20, 20)
    assert (writing["runs"], writing["p50_ms"], writing["total_ms"]) == (5, 3000, 15000)
    # submitted 7,200 s before the clock of the runs; preflight started 3,000 - 10n s before it
    waits = report["waits"]
    assert (waits["preflight"]["p50_s"], waits["preflight"]["max_s"]) == (4220, 4240)
    assert (waits["writing"]["p50_s"], waits["writing"]["max_s"]) == (1, 1)
    assert report["slowest_orders"][0] == {
        "order_id": "k-done-15",
        "state": "DELIVERED",
        "elapsed_s": 4245,
        "working_s": 3.02,
        "runs": 2,
    }
    series = report["throughput"]["per_stage"]
    assert sum(series["preflight"]) == 5 and sum(series["writing"]) == 5
    assert report["failures"]["total"] == 0


def test_performance_report_names_a_batch_failures_by_class_code_and_example(
    planted: dict[str, Any],
) -> None:
    failures = planted["collector"].get_performance_report("k-high")["failures"]

    assert failures["total"] == 1
    assert failures["by_class"] == {"QualityRejected": 1}
    assert failures["by_category"] == {"PERMANENT": 1}
    assert failures["by_code"] == {"word_count": 1}
    assert failures["by_stage"] == {"preflight": 1}
    assert failures["by_publisher"] == {"p.example": 1}
    assert failures["retries_by_cause"] == {"word_count": 1}  # its second try failed
    assert failures["top_reasons"] == [
        {
            "stage": "preflight",
            "error_class": "QualityRejected",
            "code": "word_count",
            "count": 1,
            "order_id": "k-high-7",
            "reason": "too short",
        }
    ]


def test_batch_metrics_of_a_window_count_batches_orders_and_stage_runs(
    planted: dict[str, Any],
) -> None:
    now = datetime.now(UTC)
    metrics = planted["collector"].get_batch_metrics(now - timedelta(hours=3), now)

    assert metrics["summary"] == {
        "batches": 4,
        "orders": 16,
        "delivered": 5,
        "failed": 1,
        "cancelled": 0,
        "success_rate": 83.33,
        "rewrites": 0,
    }
    assert metrics["batches_by_status"] == {"RUNNING": 2, "PAUSED": 1, "COMPLETED": 1}
    preflight = metrics["stages"]["preflight"]
    assert (preflight["runs"], preflight["ok"], preflight["failed"]) == (6, 5, 1)
    assert preflight["throughput_per_s"] == round(5 / (3 * 3600), 3)
    # a window before anything finished holds no runs
    empty = planted["collector"].get_batch_metrics(now - timedelta(days=2), now - timedelta(days=1))
    assert empty["stages"] == {} and empty["summary"]["batches"] == 0


def test_error_summary_reads_the_hourly_buckets_and_the_ledger(planted: dict[str, Any]) -> None:
    summary = planted["collector"].get_error_summary(hours=24)

    assert summary["bucket_totals"] == {"QualityRejected": 3}
    assert list(summary["buckets"]) == [planted["bucket"]]
    assert (summary["total"], summary["by_code"]) == (1, {"word_count": 1})
    with pytest.raises(ValueError, match="hours"):
        planted["collector"].get_error_summary(hours=0)


def test_each_call_runs_the_same_number_of_statements_whatever_the_size(
    planted: dict[str, Any],
) -> None:
    collector, now = planted["collector"], datetime.now(UTC)
    # a 5-order batch and an 8-order one; a 1-hour window and a 3-day one
    report = {
        _statements_of(planted, collector.get_performance_report, batch)
        for batch in ("k-done", "k-high", "k-low")
    }
    window = {
        _statements_of(planted, collector.get_batch_metrics, now - span, now)
        for span in (timedelta(hours=1), timedelta(days=3))
    }
    errors = {
        _statements_of(planted, collector.get_error_summary, hours=hours) for hours in (1, 72)
    }
    assert report == {7} and window == {3} and errors == {1}


def test_an_unknown_batch_is_named(planted: dict[str, Any]) -> None:
    with pytest.raises(UnknownBatch, match="no-such-batch"):
        planted["collector"].get_performance_report("no-such-batch")


def test_a_real_batch_report_agrees_with_its_failure_analysis(
    workers: Any, service_env: dict[str, str]
) -> None:
    # Given a batch of the demo's orders built to fail, run by the session's workers
    from recovery.analysis import analyze_batch_failures
    from tasks import submit_batch

    tag = f"mc-{uuid.uuid4().hex[:6]}"
    submit_batch(orders_built_to_fail(tag), "tests", "high", {"batch_id": tag})
    assert wait_for_final([tag]) == {tag: "PARTIAL"}

    # When the collector reports it
    report = BatchMetricsCollector().get_performance_report(tag)
    analysis = analyze_batch_failures(tag)

    # Then its counts are the ledger's and its failures the analysis'
    assert report["batch"]["states"] == {"DELIVERED": 3, "FAILED": 6}
    assert report["failures"]["by_code"] == analysis["errors_by_code"]
    assert report["failures"]["by_stage"] == analysis["by_stage"]
    assert report["stages"]["delivery"]["ok"] == 3
    assert report["stages"]["preflight"]["failed"] == 5
    assert all(stage["p50_ms"] > 0 for stage in report["stages"].values())
