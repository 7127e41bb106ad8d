"""The recovery family as Celery tasks: answered by a real worker on batch.recovery."""

from __future__ import annotations

import uuid

import pytest

from pipeline.errors import UnknownBatch
from pipeline.recovery import RecoveryRefused
from recovery.tasks import analyze_batch_failures, recover_failed_batch
from tasks import submit_batch
from tests.integration.helpers import make_orders, wait_for_final

pytestmark = pytest.mark.integration


def test_a_refused_recovery_is_re_raised_with_its_type_and_field(workers) -> None:
    result = recover_failed_batch.apply_async(args=["no-such-batch"])

    with pytest.raises(RecoveryRefused) as refused:
        result.get(timeout=60)

    assert refused.value.field == "batch_id" and "no-such-batch" in str(refused.value)


def test_an_unknown_batch_is_re_raised_by_the_analysis(workers) -> None:
    with pytest.raises(UnknownBatch):
        analyze_batch_failures.apply_async(args=["no-such-batch"]).get(timeout=60)


def test_a_completed_batch_has_nothing_to_recover(workers) -> None:
    batch_id = f"whole-{uuid.uuid4().hex[:8]}"
    submit_batch(make_orders(3, batch_id), "it", "high", {"batch_id": batch_id})
    assert wait_for_final([batch_id]) == {batch_id: "COMPLETED"}

    result = recover_failed_batch.apply_async(args=[batch_id]).get(timeout=60)
    report = analyze_batch_failures.apply_async(args=[batch_id]).get(timeout=60)

    assert result["recovery_batch_id"] is None and result["documents_to_retry"] == 0
    assert report["total_failures"] == 0
