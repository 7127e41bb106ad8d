"""What a stage task returns: the chunk's counts, and the orders that failed in it.

Flower shows a task's result in its task list and searches it, so a chunk whose
orders failed says so in words (``"outcome": "ITEMS_FAILED"``, findable with
``result:items_failed`` in Flower's search box) and names the failed orders.
The task itself still succeeds: its failures are recorded, nothing is to retry.

A writing chunk that ran QC itself (``pipeline.fusing``) adds
``"fused": {"stage": "qc", "ok": approved, "failed": rejected, "rewrites": sent back}``;
``ok`` and ``failed`` stay the writer's, and QC's failures are listed with them
(``"stage": "qc"``), so ``result:items_failed`` finds a chunk whose QC failed orders.
"""

from __future__ import annotations

from typing import Any, Final

from tasks.chunk_runner import ChunkReport

#: ``outcome`` of a chunk none of whose recorded orders failed.
CHUNK_OK: Final = "OK"
#: ``outcome`` of a chunk in which at least one order failed for good.
ITEMS_FAILED: Final = "ITEMS_FAILED"
#: ``outcome`` of a chunk that met a CRITICAL error and halted all processing.
HALTED: Final = "HALTED"
#: Failed orders named in a result; Celery cuts a result's repr at 1,024 characters.
LISTED_FAILURES: Final = 5


def chunk_result(report: ChunkReport) -> dict[str, Any]:
    """The task result of a chunk: counts, outcome, and up to five failed orders.

    Each failed order is ``{"order_id", "class", "code"}``; ``unlisted`` counts the
    failures left out. Read them all with ``batchline failures BATCH_ID``.
    """
    result: dict[str, Any] = {
        "outcome": _outcome(report),
        "claimed": report.claimed,
        "ok": len(report.succeeded),
        "failed": len(report.failed),
    }
    if report.fused_stage is not None:
        result["fused"] = {
            "stage": report.fused_stage,
            "ok": len(report.fused.succeeded),
            "failed": len(report.fused.failed),
            "rewrites": len(report.fused.rewrites),
        }
    failures = [*report.summary.failures, *report.fused.failures]
    if failures:
        fused = set(report.fused.failed)
        result["failed_orders"] = [
            {
                "order_id": report.failed_orders.get(failure.item_id, ""),
                "class": failure.error_class,
                "code": failure.code,
                **({"stage": report.fused_stage} if failure.item_id in fused else {}),
            }
            for failure in failures[:LISTED_FAILURES]
        ]
        result["unlisted"] = max(0, len(failures) - LISTED_FAILURES)
    return result


def _outcome(report: ChunkReport) -> str:
    if report.halted:
        return HALTED
    return ITEMS_FAILED if report.failed or report.fused.failed else CHUNK_OK
