"""Ledger queries for recovery: work waiting without a message, stragglers, unfinished batches.

The caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

OPEN_SQL = "i.state NOT IN ('DELIVERED', 'FAILED', 'CANCELLED')"


@dataclass(frozen=True)
class WaitingWork:
    """Items of one batch waiting in one state, with what a dispatch needs."""

    batch_id: str
    state: str
    priority: str
    max_retries: int
    item_ids: list[int]


_WAITING = text(
    f"""
    WITH picked AS (
        SELECT i.id, i.batch_id, i.state, i.position FROM items i
        JOIN batches b ON b.id = i.batch_id
        WHERE b.status = 'RUNNING' AND {OPEN_SQL}
          AND (:batch_id = '' OR i.batch_id = :batch_id)
          AND (
                (i.lease_expires_at IS NOT NULL AND i.lease_expires_at < now())
             OR (i.lease_expires_at IS NULL AND b.priority = ANY(:idle_lanes)
                 AND i.updated_at < now() - make_interval(secs => :grace))
          )
        ORDER BY i.batch_id, i.position
        LIMIT :limit
    )
    SELECT p.batch_id, p.state, b.priority,
           coalesce((b.options->>'max_retries')::int, 3),
           array_agg(p.id ORDER BY p.position)
    FROM picked p JOIN batches b ON b.id = p.batch_id
    GROUP BY p.batch_id, p.state, b.priority, b.options
    """
)


def waiting_work(
    session: Session,
    *,
    idle_lanes: Sequence[str],
    grace_seconds: float,
    limit: int,
    batch_id: str = "",
) -> list[WaitingWork]:
    """Open items of RUNNING batches that no message or worker will pick up by itself.

    That is every item whose lease ran out (its worker died or its retry message
    was lost), and, for lanes whose queue is empty, every unleased item that has
    waited longer than ``grace_seconds`` (its message was lost, e.g. Redis
    restarted empty). Pass ``idle_lanes=PRIORITIES`` with ``grace_seconds=0`` to
    take every waiting item (resume).
    """
    rows = session.execute(
        _WAITING,
        {
            "batch_id": batch_id,
            "idle_lanes": list(idle_lanes),
            "grace": grace_seconds,
            "limit": limit,
        },
    )
    return [
        WaitingWork(str(b), str(state), str(priority), int(retries), [int(i) for i in ids])
        for b, state, priority, retries, ids in rows
    ]


_CANCEL = text(
    f"""
    UPDATE items AS i SET state = 'CANCELLED', lease_owner = NULL, lease_expires_at = NULL,
           error_class = 'Cancelled', error_message = 'batch cancelled', updated_at = now()
    FROM batches b
    WHERE b.id = i.batch_id AND b.status = 'CANCELLED' AND b.finalized_at IS NULL
      AND (:batch_id = '' OR i.batch_id = :batch_id) AND {OPEN_SQL}
      AND (i.lease_expires_at IS NULL OR i.lease_expires_at < now())
    RETURNING i.batch_id
    """
)


def cancel_idle_items(session: Session, batch_id: str = "") -> dict[str, int]:
    """End every open, unleased item of cancelled batches; return counts per batch.

    Items a worker holds right now finish their stage first and are ended by a
    later call (the sweeper's).
    """
    counts: dict[str, int] = {}
    for (batch,) in session.execute(_CANCEL, {"batch_id": batch_id}):
        counts[str(batch)] = counts.get(str(batch), 0) + 1
    return counts


_UNFINISHED_WITHOUT_OPEN_ITEMS = text(
    f"""
    SELECT b.id FROM batches b
    WHERE b.finalized_at IS NULL AND b.status IN ('RUNNING', 'CANCELLED')
      AND NOT EXISTS (SELECT 1 FROM items i WHERE i.batch_id = b.id AND {OPEN_SQL})
    """
)


def batches_ready_to_finalize(session: Session) -> list[str]:
    """Batches whose items are all terminal but which were never finalized."""
    return [str(row[0]) for row in session.execute(_UNFINISHED_WITHOUT_OPEN_ITEMS)]


_ACTIVE = text("SELECT id FROM batches WHERE finalized_at IS NULL")


def active_batches(session: Session) -> list[str]:
    """Ids of batches not yet finalized (running, paused or being cancelled)."""
    return [str(row[0]) for row in session.execute(_ACTIVE)]


_EXPIRE_KEYS = text("DELETE FROM idempotency_keys WHERE expires_at < now()")


def delete_expired_idempotency_keys(session: Session) -> int:
    """Forget idempotency keys past their TTL; return how many."""
    return int(session.execute(_EXPIRE_KEYS).rowcount or 0)  # type: ignore[attr-defined]
