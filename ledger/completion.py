"""The ledger side of a batch's completion: the ``on_complete`` outbox and result handles.

A finalized batch whose options name ``on_complete`` and whose
``on_complete_sent_at`` is NULL is an outbox entry: it was recorded by the
finalize transaction itself, so a worker killed right after finalizing loses
nothing; whoever claims the entry (``claim_on_complete``) sends the callback. The
caller owns the transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

#: The partial index ``ix_batches_on_complete_pending`` is defined with this predicate.
PENDING_SQL = "finalized_at IS NOT NULL AND on_complete_sent_at IS NULL AND options ? 'on_complete'"


@dataclass(frozen=True)
class Finished:
    """A finalized batch and its handle (the ``task_id`` its submitter got)."""

    batch_id: str
    task_id: str


_CLAIM = text(
    f"""
    UPDATE batches SET on_complete_sent_at = now()
    WHERE id = :b AND {PENDING_SQL}
    RETURNING options ->> 'on_complete'
    """
)


def claim_on_complete(session: Session, batch_id: str) -> str | None:
    """Mark the batch's callback as sent; return its task name (None: nothing to send).

    The row stays locked until the transaction ends: send the callback before the
    commit, so a sender killed first rolls the mark back and the sweeper sends it.
    """
    return session.execute(_CLAIM, {"b": batch_id}).scalar()


_PENDING = text(f"SELECT id FROM batches WHERE {PENDING_SQL} ORDER BY finalized_at LIMIT :limit")


def pending_on_complete(session: Session, limit: int) -> list[str]:
    """Finalized batches whose callback was not sent, oldest first."""
    return [str(b) for b in session.scalars(_PENDING, {"limit": limit})]


_RECENT = text(
    """
    SELECT id, task_id FROM batches
    WHERE finalized_at > now() - make_interval(secs => :seconds) AND task_id IS NOT NULL
    ORDER BY finalized_at DESC LIMIT :limit
    """
)


def recently_finalized(session: Session, seconds: float, limit: int) -> list[Finished]:
    """Batches finalized in the last ``seconds`` (newest first), with their handles."""
    rows = session.execute(_RECENT, {"seconds": seconds, "limit": limit})
    return [Finished(str(b), str(t)) for b, t in rows]
