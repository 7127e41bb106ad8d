"""Per-order timings of a batch, read from the ledger: waits to first stage and to delivery."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from bench.measure import percentile
from ledger.db import transaction

_ORDER_TIMES = text(
    """
    SELECT i.id,
           min(o.started_at) FILTER (WHERE o.stage = 'preflight') - b.created_at,
           max(o.finished_at) FILTER (WHERE o.stage = 'delivery') - b.created_at
    FROM items i JOIN batches b ON b.id = i.batch_id
    LEFT JOIN stage_outputs o ON o.item_id = i.id
    WHERE i.batch_id = ANY(:batch_ids)
    GROUP BY i.id, b.created_at
    """
)


def order_waits(batch_ids: list[str]) -> dict[str, float]:
    """p50/p95 (ms) from submission to each order's first stage start and to its delivery."""
    with transaction() as session:
        rows = session.execute(_ORDER_TIMES, {"batch_ids": batch_ids}).all()
    first = [r[1].total_seconds() * 1000 for r in rows if r[1] is not None]
    delivered = [r[2].total_seconds() * 1000 for r in rows if r[2] is not None]
    return {
        "orders": len(rows),
        "first_stage_p50_ms": round(percentile(first, 50), 1),
        "first_stage_p95_ms": round(percentile(first, 95), 1),
        "delivered_p50_ms": round(percentile(delivered, 50), 1),
        "delivered_p95_ms": round(percentile(delivered, 95), 1),
    }


def batch_seconds(batch_id: str) -> float:
    """From the batch's submission to its finalize, by the ledger's clock."""
    with transaction() as session:
        value: Any = session.execute(
            text("SELECT finalized_at - created_at FROM batches WHERE id = :b"), {"b": batch_id}
        ).scalar_one()
    return float(value.total_seconds())
