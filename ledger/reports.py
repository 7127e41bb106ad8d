"""Read-only summaries over the ledger for people: timings per stage, failures by class."""

from __future__ import annotations

from collections.abc import Sequence
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
