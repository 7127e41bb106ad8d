"""Read-only queries behind ``batchline batches``, ``status`` and ``monitor``.

Each answers one screen's question with one statement, whatever the number of
batches: counts are aggregated in SQL (``GROUP BY``), never fetched per batch,
so a frame over 1,000 open batches costs the same few round trips as one over
ten. The caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from pipeline.states import FINAL_BATCH_STATUSES, pooled_sql

#: Open batches first; within them and among ended ones, high before normal before low.
_PRIORITY_RANK = "CASE b.priority WHEN 'high' THEN 0 WHEN 'normal' THEN 1 ELSE 2 END"
_FINAL = ", ".join(f"'{status.value}'" for status in sorted(FINAL_BATCH_STATUSES))

# The page of batches is chosen first (LIMIT on batches alone, by index order),
# then only its items are counted: the cost follows the page, not the backlog.
_BATCHES_SQL = f"""
    WITH page AS (
        SELECT b.id, b.priority, b.status, b.total_items, b.created_at, b.finalized_at
        FROM batches b
        WHERE (:status = '' OR b.status = upper(:status))
          AND (:priority = '' OR b.priority = lower(:priority))
          AND (NOT :open_only OR b.status NOT IN ({_FINAL}))
        ORDER BY {{order}}
        LIMIT :limit OFFSET :offset
    )
    SELECT p.id, p.priority, p.status, p.total_items, p.created_at, p.finalized_at,
           count(*) FILTER (WHERE i.state = 'DELIVERED'),
           count(*) FILTER (WHERE i.state = 'FAILED'),
           count(*) FILTER (WHERE i.state = 'CANCELLED')
    FROM page p LEFT JOIN items i ON i.batch_id = p.id
    GROUP BY p.id, p.priority, p.status, p.total_items, p.created_at, p.finalized_at
    """
#: by_priority -> the statement: high first then oldest (a monitor), or newest first (a list).
_BATCHES = {
    False: text(_BATCHES_SQL.format(order="b.created_at DESC, b.id")),
    True: text(_BATCHES_SQL.format(order=f"{_PRIORITY_RANK}, b.created_at, b.id")),
}


@dataclass(frozen=True)
class BatchLine:
    """One batch as a list shows it: its row and its terminal counts."""

    batch_id: str
    priority: str
    status: str
    total: int
    created_at: datetime
    finalized_at: datetime | None
    delivered: int
    failed: int
    cancelled: int

    @property
    def ended(self) -> int:
        """Orders whose journey is over."""
        return self.delivered + self.failed + self.cancelled

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: timestamps in ISO 8601, status lower-cased as ``batch_status`` has it."""
        return {
            "batch_id": self.batch_id,
            "priority": self.priority,
            "status": self.status.lower(),
            "total": self.total,
            "completed": self.delivered,
            "failed": self.failed,
            "cancelled": self.cancelled,
            "created_at": self.created_at.isoformat(),
            "finalized_at": self.finalized_at.isoformat() if self.finalized_at else None,
        }


def list_batches(
    session: Session,
    *,
    status: str = "",
    priority: str = "",
    limit: int = 20,
    offset: int = 0,
    open_only: bool = False,
    by_priority: bool = False,
) -> list[BatchLine]:
    """Batches with their delivered/failed/cancelled counts, in one statement.

    Args:
        session: the caller's session.
        status: only batches in this status (any case); "" for all.
        priority: only this priority; "" for all.
        limit: at most this many batches.
        offset: skip this many first (a later page).
        open_only: only batches that have not ended (running, paused, pending).
        by_priority: high first, then oldest first (what a monitor shows);
            otherwise newest first (what a list shows).
    """
    params = {
        "status": status,
        "priority": priority,
        "limit": limit,
        "offset": offset,
        "open_only": open_only,
    }
    rows = session.execute(_BATCHES[by_priority], params).all()
    lines = [_line(row) for row in rows]
    # GROUP BY does not keep the page's order: sort again by the same key.
    rank = {"high": 0, "normal": 1}
    if by_priority:
        return sorted(lines, key=lambda b: (rank.get(b.priority, 2), b.created_at, b.batch_id))
    return sorted(lines, key=lambda b: (-b.created_at.timestamp(), b.batch_id))


def _line(row: Sequence[Any]) -> BatchLine:
    batch_id, priority, status, total, created, finalized, delivered, failed, cancelled = row
    return BatchLine(
        str(batch_id),
        str(priority),
        str(status),
        int(total),
        created,
        finalized,
        int(delivered),
        int(failed),
        int(cancelled),
    )


_BATCH_TOTALS = text(
    """
    SELECT status, count(*), coalesce(sum(total_items), 0) FROM batches GROUP BY status
    """
)


def batch_totals(session: Session) -> dict[str, tuple[int, int]]:
    """Per batch status (lower-cased): how many batches and how many orders they hold."""
    rows = session.execute(_BATCH_TOTALS)
    return {str(status).lower(): (int(n), int(orders)) for status, n, orders in rows}


_LANES = text(
    f"""
    SELECT i.lane, count(*), extract(epoch FROM now() - min(i.updated_at))
    FROM items i JOIN batches b ON b.id = i.batch_id
    WHERE {pooled_sql("i.")} AND b.status = 'RUNNING'
    GROUP BY i.lane
    """
)


def lane_pool(session: Session) -> dict[str, tuple[int, float]]:
    """Per lane: items of running batches waiting in the pool, and the oldest wait in seconds.

    An item's ``updated_at`` is when it last changed (claimed, an outcome recorded,
    returned): for a pooled item, when it began to wait.
    """
    rows = session.execute(_LANES)
    return {str(lane): (int(n), float(age or 0.0)) for lane, n, age in rows}


_HALT = text("SELECT reason, set_at, data FROM controls WHERE name = 'halt'")


@dataclass(frozen=True)
class HaltState:
    """The system-wide halt as the ledger holds it."""

    reason: str
    set_at: datetime
    data: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"reason": self.reason, "since": self.set_at.isoformat(), **self.data}


def current_halt(session: Session) -> HaltState | None:
    """The halt in force (reason, since when, who or what set it), or ``None``."""
    row = session.execute(_HALT).first()
    return HaltState(str(row[0]), row[1], dict(row[2] or {})) if row else None


# An item's failure: its newest failed output that is not a QC rewrite (as
# recovery.analysis reads it); the output holds its category and reason code.
_FAILED_ORDERS = text(
    """
    SELECT i.order_id, f.stage, i.error_class, f.output ->> 'code',
           coalesce(i.error_message, f.output ->> 'error')
    FROM items i
    LEFT JOIN LATERAL (
        SELECT o.stage, o.output FROM stage_outputs o
        WHERE o.item_id = i.id AND NOT o.ok AND NOT (o.output ? 'rewrite')
        ORDER BY o.id DESC LIMIT 1
    ) f ON true
    WHERE i.batch_id = :batch_id AND i.state = 'FAILED'
    ORDER BY i.position LIMIT :limit
    """
)


def failed_orders(session: Session, batch_id: str, limit: int) -> list[dict[str, str]]:
    """The batch's first ``limit`` failed orders: order id, stage, class, code, reason."""
    rows = session.execute(_FAILED_ORDERS, {"batch_id": batch_id, "limit": limit})
    return [_failure(row) for row in rows]


def _failure(row: Sequence[Any]) -> dict[str, str]:
    order_id, stage, error_class, code, reason = row
    return {
        "order_id": str(order_id),
        "stage": str(stage or "-"),
        "error_class": str(error_class or "-"),
        "code": str(code or "-"),
        "reason": str(reason or ""),
    }


_RECENT_FAILURES = text(
    """
    SELECT i.batch_id, i.order_id, i.error_class, i.error_message, i.updated_at
    FROM items i WHERE i.state = 'FAILED'
    ORDER BY i.updated_at DESC, i.id DESC LIMIT :limit
    """
)


def recent_failures(session: Session, limit: int) -> list[dict[str, str]]:
    """The ``limit`` orders that failed last, any batch: batch, order, class, reason, when."""
    rows = session.execute(_RECENT_FAILURES, {"limit": limit})
    return [
        {
            "batch_id": str(batch_id),
            "order_id": str(order_id),
            "error_class": str(error_class or "-"),
            "reason": str(message or ""),
            "at": at.isoformat(),
        }
        for batch_id, order_id, error_class, message, at in rows
    ]


# A deferred item is leased to its task's retry (``<task_id>@retry``, see
# ledger.items.defer_items) until its backoff or rate-limit wait ends.
_DEFERRED = text(
    """
    SELECT count(*), max(lease_expires_at) FROM items
    WHERE batch_id = :batch_id AND lease_owner LIKE '%@retry' AND lease_expires_at > now()
    """
)


def deferred_orders(session: Session, batch_id: str) -> dict[str, Any]:
    """The batch's orders waiting out a retry's backoff or a rate limit: how many, until when.

    They are neither in the pool nor running, so without this a batch that waits
    for them looks stuck.
    """
    count, until = session.execute(_DEFERRED, {"batch_id": batch_id}).one()
    return {"orders": int(count), "until": until.isoformat() if until else None}
