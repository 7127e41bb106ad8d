"""analyze_batch_failures against real workers, a real ledger and a real failing publisher.

Each batch is built so its failures are known in advance: orders made to fail
preflight and QC (the demo's ``orders_built_to_fail``), and deliveries to a
webhook publisher that answers every request with 503. The analysis must count
them exactly, name what they share, and point at the command that acts on them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func
from sqlalchemy.orm import Session

from cli.sample_orders import orders_built_to_fail
from cli.workers import ALL_LANES, spawn_worker, stop_workers
from ledger.db import engine, transaction
from ledger.models import Batch, Item, StageOutput, StoredDocument
from pipeline.errors import UnknownBatch
from recovery.analysis import analyze_batch_failures
from tests.integration.helpers import (
    ledger_counts,
    register_webhook_publisher,
    wait_for_final,
    webhook_orders,
)
from tests.support_publisher_server import PublisherServer

pytestmark = pytest.mark.integration

ANALYSIS_REDIS_DB = 11
BAD, GOOD = "failing-news.example", "healthy-news.example"


def test_preflight_and_qc_refusals_are_counted_by_reason(
    workers: Any, service_env: dict[str, str]
) -> None:
    # Given a batch of the demo's orders built to fail: six of nine fail
    from recovery.tasks import analyze_batch_failures as analysis_task
    from tasks import submit_batch

    tag = f"fa-{uuid.uuid4().hex[:6]}"
    submit_batch(orders_built_to_fail(tag), "tests", "high", {"batch_id": tag})
    assert wait_for_final([tag]) == {tag: "PARTIAL"}

    # When it is analysed, directly and through the Celery task on batch.recovery
    report = analyze_batch_failures(tag)
    from_worker = analysis_task.apply_async(args=[tag]).get(timeout=60)

    # Then every failure is counted by class, code, category, stage, publisher, customer
    assert from_worker == report
    assert (report["total_orders"], report["total_failures"], report["error_rate"]) == (
        9,
        6,
        66.67,
    )
    assert (report["recoverable_count"], report["manual_count"], report["permanent_count"]) == (
        0,
        0,
        6,
    )
    assert report["errors_by_type"] == {
        "PolicyViolation": 2,
        "CustomerSuspended": 1,
        "DuplicateOrder": 1,
        "InvalidInput": 1,
        "QualityRejected": 1,
    }
    assert report["errors_by_code"] == {
        "anchor_profile": 1,
        "customer_active": 1,
        "duplicate": 1,
        "forbidden_topic": 1,
        "publisher_language": 1,
        "word_count": 1,
    }
    assert report["errors_by_category"] == {"PERMANENT": 6}
    assert report["by_stage"] == {"preflight": 5, "qc": 1}
    assert report["by_publisher"] == {
        "outdoorjournal.com": 2,
        "petlovers.blog": 2,
        "healthyliving.co.uk": 1,
        "microposts.io": 1,
    }
    assert report["by_customer"] == {
        "acme-outdoor": 2,
        "codeforge": 2,
        "petpal": 1,
        "quickcash-credit": 1,
    }
    assert report["problematic_items"] == [] and report["patterns"] == []

    # And the advice: review the input, fix the catalog, correct the orders, check QC bounds
    advice = {r["kind"]: r for r in report["recommendations"]}
    assert list(advice) == ["high_error_rate", "catalog", "invalid_input", "quality"]
    assert advice["high_error_rate"]["trigger"] == {"error_rate": 66.67, "threshold": 50.0}
    assert (
        advice["high_error_rate"]["command"]
        == f"batchline order {tag}-fail-suspended --batch {tag}"
    )
    assert advice["catalog"]["command"] == (
        f"batchline catalog import CATALOG_FILE && batchline recover {tag} --all"
        f" --order {tag}-fail-language"
    )
    assert advice["invalid_input"]["trigger"]["failures"] == 4
    assert advice["quality"]["trigger"]["codes"] == {"word_count": 1}

    # And each failed order, in manifest order, with the last stage it got through
    documents = [
        (d["order_id"].removeprefix(f"{tag}-fail-"), d["stage"], d["code"], d["last_good_stage"])
        for d in report["failed_documents"]
    ]
    assert documents == [
        ("suspended", "preflight", "customer_active", None),
        ("dup-again", "preflight", "duplicate", None),
        ("exact-3", "preflight", "anchor_profile", None),
        ("language", "preflight", "publisher_language", None),
        ("topic", "preflight", "forbidden_topic", None),
        ("length", "qc", "word_count", "writing"),
    ]
    assert all(not d["recoverable"] and d["attempts"] == 1 for d in report["failed_documents"])


def test_an_unknown_batch_is_refused_and_nothing_is_written(workers: Any) -> None:
    from recovery.tasks import analyze_batch_failures as analysis_task

    before = ledger_counts()
    with pytest.raises(UnknownBatch, match="no-such-batch"):
        analyze_batch_failures("no-such-batch")
    with pytest.raises(UnknownBatch, match="no-such-batch"):
        analysis_task.apply_async(args=["no-such-batch"]).get(timeout=30)
    assert ledger_counts() == before


def test_deliveries_to_a_failing_publisher_are_recoverable_and_name_it(
    service_env: dict[str, str], tmp_path: Path, isolated_redis: Callable[[int], str]
) -> None:
    # Given two webhook publishers, one answering every request with 503
    with PublisherServer() as bad, PublisherServer() as good:
        bad.fail_next(1000, status=503)
        register_webhook_publisher(BAD, bad.url)
        register_webhook_publisher(GOOD, good.url)
        env = {
            **service_env,
            "REDIS_URL": isolated_redis(ANALYSIS_REDIS_DB),
            "DELIVERY_BACKEND": "webhook",
            # Every order must spend its budget here: no circuit may hold them back.
            "BREAKER_FAILURES": "1000",
        }
        worker = spawn_worker(
            ALL_LANES, concurrency=2, name="analysis", env=env, log_path=tmp_path / "worker.log"
        )
        tag = f"fd-{uuid.uuid4().hex[:6]}"
        orders = webhook_orders(f"{tag}-bad", 4, BAD) + webhook_orders(f"{tag}-ok", 2, GOOD)
        try:
            # When the batch runs with one retry per stage
            batch = {"id": tag, "priority": "high", "orders": orders, "max_retries": 1}
            _submit(batch, env, tmp_path)
            assert wait_for_final([tag], timeout=120) == {tag: "PARTIAL"}
        finally:
            stop_workers([worker])

    # Then the four failed deliveries are one recoverable reason at one publisher
    report = analyze_batch_failures(tag)
    assert (report["total_failures"], report["recoverable_count"], report["error_rate"]) == (
        4,
        4,
        66.67,
    )
    assert report["errors_by_code"] == {"webhook_status_503": 4}
    assert report["errors_by_category"] == {"TRANSIENT": 4}
    assert report["errors_by_type"] == {"TransientError": 4}
    assert report["by_stage"] == {"delivery": 4}
    assert report["by_publisher"] == {BAD: 4}
    assert [p["kind"] for p in report["patterns"]] == ["recurring_reason", "dominant_publisher"]
    dominant = report["patterns"][1]["evidence"]
    assert (dominant["publisher"], dominant["failure_rate"], dominant["others_failure_rate"]) == (
        BAD,
        100.0,
        0.0,
    )
    advice = {r["kind"]: r for r in report["recommendations"]}
    assert advice["network"]["trigger"]["publishers"] == {BAD: 4}
    assert advice["recover"]["command"] == f"batchline recover {tag}"
    assert advice["recover"]["trigger"]["recoverable_count"] == 4
    assert {
        (d["stage"], d["attempts"], d["last_good_stage"]) for d in report["failed_documents"]
    } == {("delivery", 2, "qc")}
    assert all(d["recoverable"] for d in report["failed_documents"])


def test_an_order_that_failed_again_in_a_recovery_is_problematic(
    service_env: dict[str, str],
) -> None:
    # Given a failed delivery and a recovery of it that failed again (lineage links by hand)
    tag = f"fl-{uuid.uuid4().hex[:6]}"
    with transaction() as session:
        original = _failed_item(session, tag, ok_stages=("preflight", "writing", "qc"))
        _failed_item(session, f"{tag}.r1", ok_stages=(), origin=(tag, original))

    # When either batch is analysed
    first, second = analyze_batch_failures(tag), analyze_batch_failures(f"{tag}.r1")

    # Then the order counts as failed twice over two batches, from both sides
    expected = [{"order_id": f"{tag}-1", "failures": 2, "batches": 2}]
    assert first["problematic_items"] == second["problematic_items"] == expected
    # and the recovery's last good stage is the one its origin got through
    assert second["failed_documents"][0]["last_good_stage"] == "qc"


def test_the_analysis_reads_the_ledger_in_five_statements_whatever_the_size(
    service_env: dict[str, str],
) -> None:
    # Given a one-order batch and a batch of many orders, all failed
    small, large = f"fs-{uuid.uuid4().hex[:6]}", f"fm-{uuid.uuid4().hex[:6]}"
    with transaction() as session:
        _failed_item(session, small, ok_stages=("preflight",))
        _failed_batch(session, large, orders=40)

    # When each is analysed, then each costs the same five statements
    for batch_id, failures in ((small, 1), (large, 40)):
        with _statements() as statements:
            assert analyze_batch_failures(batch_id)["total_failures"] == failures
        assert len([sql for sql in statements if "batches" in sql or "items" in sql]) == 5


@contextmanager
def _statements() -> Iterator[list[str]]:
    """Every SQL statement the ledger's engine runs meanwhile (connection set-up included)."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(engine(), "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine(), "before_cursor_execute", record)


def _failed_batch(session: Session, batch_id: str, *, orders: int) -> None:
    """A finished batch whose ``orders`` orders all failed QC with word_count."""
    session.add(
        Batch(
            id=batch_id,
            project_uuid="tests",
            priority="normal",
            status="FAILED",
            options={},
            manifest_sha256="0" * 64,
            total_items=orders,
            finalized_at=func.now(),
        )
    )
    session.flush()
    items = [
        Item(
            batch_id=batch_id,
            position=n,
            order_id=f"{batch_id}-{n}",
            customer_id=f"customer-{n % 3}",
            publisher_domain=f"site-{n % 4}.example",
            state="FAILED",
            error_class="QualityRejected",
            error_message="word_count: too short",
        )
        for n in range(orders)
    ]
    session.add_all(items)
    session.flush()
    session.add_all(StoredDocument(item_id=item.id, document={}) for item in items)
    failure = {"error": "word_count", "category": "PERMANENT", "code": "word_count"}
    session.add_all(
        StageOutput(item_id=item.id, stage="qc", attempt=1, ok=False, output=failure)
        for item in items
    )


def _submit(batch: dict[str, Any], env: dict[str, str], tmp_path: Path) -> None:
    """Submit with the batch's own options from a child using the test's Redis database."""
    script = (
        "import json, sys\nfrom tasks import submit_batch\n"
        "b = json.load(open(sys.argv[1]))\n"
        "submit_batch(b['orders'], 'tests', b['priority'],"
        " {'batch_id': b['id'], 'max_retries': b['max_retries']})\n"
    )
    manifest = tmp_path / "batch.json"
    manifest.write_text(json.dumps(batch))
    subprocess.run(
        [sys.executable, "-c", script, str(manifest)], env={**os.environ, **env}, check=True
    )


def _failed_item(
    session: Session,
    batch_id: str,
    *,
    ok_stages: tuple[str, ...],
    origin: tuple[str, int] | None = None,
) -> int:
    """A finished one-order batch whose order failed at delivery after ``ok_stages``."""
    session.add(
        Batch(
            id=batch_id,
            project_uuid="tests",
            priority="normal",
            status="FAILED",
            options={},
            manifest_sha256="0" * 64,
            total_items=1,
            origin_batch_id=origin[0] if origin else None,
            root_batch_id=origin[0] if origin else None,
            recovery_round=1 if origin else None,
            finalized_at=func.now(),
        )
    )
    session.flush()
    order_id = f"{batch_id.split('.')[0]}-1"
    item = Item(
        batch_id=batch_id,
        position=0,
        order_id=order_id,
        customer_id="acme-outdoor",
        publisher_domain=BAD,
        state="FAILED",
        error_class="TransientError",
        error_message="webhook answered 503",
        origin_item_id=origin[1] if origin else None,
        recovers_item_id=origin[1] if origin else None,
    )
    session.add(item)
    session.flush()
    session.add(StoredDocument(item_id=item.id, document={"order_id": order_id}))
    for attempt, stage in enumerate(ok_stages, start=1):
        session.add(StageOutput(item_id=item.id, stage=stage, attempt=attempt, ok=True, output={}))
    failure = {"error": "503", "category": "TRANSIENT", "code": "webhook_status_503"}
    session.add(StageOutput(item_id=item.id, stage="delivery", attempt=2, ok=False, output=failure))
    session.flush()
    return int(item.id)
