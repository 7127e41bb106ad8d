"""Read-only summaries over the ledger for people: timings per stage, failures by class."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

_TIMINGS = text(
    """
    SELECT o.stage, count(*) AS runs, avg(o.duration_ms) AS mean_ms,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY o.duration_ms) AS p95_ms,
           sum(CASE WHEN o.ok THEN 0 ELSE 1 END) AS failures
    FROM stage_outputs o JOIN items i ON i.id = o.item_id
    WHERE i.batch_id = ANY(:batch_ids)
    GROUP BY o.stage
    """
)

_FAILURES = text(
    """
    SELECT error_class, count(*) FROM items
    WHERE batch_id = ANY(:batch_ids) AND state = 'FAILED'
    GROUP BY error_class ORDER BY count(*) DESC
    """
)


def stage_timings(session: Session, batch_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per stage: runs, mean and p95 handler time in ms, failures."""
    rows = session.execute(_TIMINGS, {"batch_ids": list(batch_ids)})
    return {
        stage: {
            "runs": int(runs),
            "mean_ms": round(float(mean), 2),
            "p95_ms": round(float(p95), 2),
            "failures": int(failures),
        }
        for stage, runs, mean, p95, failures in rows
    }


def failures_by_class(session: Session, batch_ids: Sequence[str]) -> dict[str, int]:
    """Failed items counted by error class."""
    rows = session.execute(_FAILURES, {"batch_ids": list(batch_ids)})
    return {str(name): int(count) for name, count in rows}


def order_journey(
    session: Session, order_id: str, batch_id: str | None = None
) -> list[dict[str, Any]]:
    """Everything the ledger holds about an order, per batch it appeared in.

    Each entry has the item (state, error, attempts), every stage output in the order
    they were written (preflight matrix, writer prompt, articles, QC reports,
    delivery receipt) and the stored delivery receipt.
    """
    items = session.execute(_ITEMS, {"order_id": order_id, "batch_id": batch_id or ""})
    journeys = []
    for item_id, batch, state, error_class, error_message, attempts, created, updated in items:
        outputs = session.execute(_OUTPUTS, {"item_id": item_id})
        receipt = session.execute(_RECEIPT, {"item_id": item_id}).first()
        journeys.append(
            {
                "batch_id": batch,
                "order_id": order_id,
                "state": state,
                "error_class": error_class,
                "error_message": error_message,
                "attempts": attempts,
                "created_at": created.isoformat(),
                "updated_at": updated.isoformat(),
                "stages": [
                    {
                        "stage": stage,
                        "attempt": attempt,
                        "ok": ok,
                        "duration_ms": ms,
                        "at": at.isoformat(),
                        "output": output,
                    }
                    for stage, attempt, ok, ms, at, output in outputs
                ],
                "receipt": receipt[0] if receipt else None,
            }
        )
    return journeys


_ITEMS = text(
    """
    SELECT id, batch_id, state, error_class, error_message, attempts, created_at, updated_at
    FROM items WHERE order_id = :order_id AND (:batch_id = '' OR batch_id = :batch_id)
    ORDER BY created_at
    """
)
_OUTPUTS = text(
    """
    SELECT stage, attempt, ok, duration_ms, created_at, output FROM stage_outputs
    WHERE item_id = :item_id ORDER BY id
    """
)
_RECEIPT = text("SELECT receipt FROM delivery_receipts WHERE item_id = :item_id")


_FAILED_ORDERS = text(
    """
    SELECT order_id, error_class, error_message FROM items
    WHERE batch_id = ANY(:batch_ids) AND state = 'FAILED' ORDER BY order_id
    """
)
_REWRITES = text(
    """
    SELECT count(*) FROM stage_outputs o JOIN items i ON i.id = o.item_id
    WHERE i.batch_id = ANY(:batch_ids) AND o.stage = 'qc' AND (o.output->>'rewrite')::boolean
    """
)


def failed_orders(session: Session, batch_ids: Sequence[str]) -> list[dict[str, str]]:
    """Every failed order with its error class and reason."""
    rows = session.execute(_FAILED_ORDERS, {"batch_ids": list(batch_ids)})
    return [
        {"order_id": str(order), "error_class": str(cls), "reason": str(message)}
        for order, cls, message in rows
    ]


def rewrite_count(session: Session, batch_ids: Sequence[str]) -> int:
    """How many times QC sent an article back to the writer."""
    return int(session.scalar(_REWRITES, {"batch_ids": list(batch_ids)}) or 0)


_SPANS = text(
    """
    SELECT o.stage, i.customer_id, i.publisher_domain, o.started_at, o.finished_at
    FROM stage_outputs o JOIN items i ON i.id = o.item_id
    WHERE i.batch_id = ANY(:batch_ids) AND o.stage = ANY(:stages)
      AND o.started_at IS NOT NULL AND o.finished_at IS NOT NULL
    """
)


def output_spans(
    session: Session, batch_ids: Sequence[str], stages: Sequence[str]
) -> list[tuple[str, str, str, datetime, datetime]]:
    """``(stage, customer, publisher, started, finished)`` of every stored output of ``stages``.

    The span is when the chunk held the item (its slots taken, its outcome not yet
    committed): what the concurrency caps limit.
    """
    params = {"batch_ids": list(batch_ids), "stages": list(stages)}
    return [
        (str(stage), str(customer), str(domain), started, finished)
        for stage, customer, domain, started, finished in session.execute(_SPANS, params)
    ]
