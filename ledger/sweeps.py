"""Ledger queries for recovery: work waiting without a message, stragglers, unfinished batches.

The caller owns the transaction.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from pipeline.states import open_sql

OPEN_SQL = open_sql("i.state")


_CANCEL = text(
    f"""
    WITH idle AS (
        -- Rows in id order, skipping any a worker has locked right now: cancelling
        -- never waits on (or deadlocks with) a chunk's claim or record; what it
        -- skips, a later call (the sweeper's) cancels.
        SELECT i.id FROM items i JOIN batches b ON b.id = i.batch_id
        WHERE b.status = 'CANCELLED' AND b.finalized_at IS NULL
          AND (:batch_id = '' OR i.batch_id = :batch_id) AND {OPEN_SQL}
          AND (i.lease_expires_at IS NULL OR i.lease_expires_at < now())
        ORDER BY i.id
        FOR UPDATE OF i SKIP LOCKED
    )
    UPDATE items AS i SET state = 'CANCELLED', lease_owner = NULL, lease_expires_at = NULL,
           error_class = 'Cancelled', error_message = 'batch cancelled', updated_at = now()
    FROM idle WHERE i.id = idle.id
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
