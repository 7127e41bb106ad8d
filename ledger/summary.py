"""The ledger's figures for one UTC day: what the daily summary event records.

The caller owns the transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

_FIGURES = text(
    """
    SELECT
      (SELECT count(*) FROM batches WHERE created_at >= :start AND created_at < :end),
      (SELECT coalesce(jsonb_object_agg(status, n), '{}'::jsonb) FROM (
          SELECT status, count(*) AS n FROM batches
          WHERE finalized_at >= :start AND finalized_at < :end GROUP BY status) f),
      (SELECT count(*) FROM items
          WHERE state = 'DELIVERED' AND updated_at >= :start AND updated_at < :end),
      (SELECT count(*) FROM items
          WHERE state = 'FAILED' AND updated_at >= :start AND updated_at < :end),
      (SELECT count(*) FROM batches WHERE status = 'RUNNING')
    """
)

_SUMMARISED = text(
    "SELECT 1 FROM events WHERE kind = 'daily_summary' AND data->>'day' = :day LIMIT 1"
)


def day_figures(session: Session, start: datetime, end: datetime) -> dict[str, Any]:
    """Batches submitted and finalized (per status), orders delivered and failed in [start, end)."""
    row = session.execute(_FIGURES, {"start": start, "end": end}).one()
    submitted, finalized, delivered, failed, running = row
    return {
        "batches_submitted": int(submitted),
        "batches_finalized": {str(k): int(v) for k, v in dict(finalized).items()},
        "orders_delivered": int(delivered),
        "orders_failed": int(failed),
        "batches_running": int(running),
    }


def summarised(session: Session, day: str) -> bool:
    """Whether ``day`` (YYYY-MM-DD) has its summary event already.

    Serialised by a transaction-scoped advisory lock, so two beats' summaries of
    the same day cannot both find none.
    """
    session.execute(text("SELECT pg_advisory_xact_lock(hashtext('batchline.daily_summary'))"))
    return session.execute(_SUMMARISED, {"day": day}).first() is not None
