"""Single orders waiting for their batch: accept, group, claim for a flush, look up.

A flush is two short transactions (``tasks.intake``): :func:`assign_group` gives up
to ``limit`` pending rows of one group a batch id (rows locked ``FOR UPDATE SKIP
LOCKED``, so two intake processes never take the same order), then, after the
batch is submitted, :func:`mark_flushed` stamps them. The caller owns the transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from ledger.models import IntakeOrder


@dataclass(frozen=True)
class IntakeRow:
    """What a caller learns of an accepted order."""

    order_id: str
    project_uuid: str
    priority: str
    document: dict[str, Any]
    accepted_at: datetime
    batch_id: str | None
    flushed_at: datetime | None

    @property
    def state(self) -> str:
        """``pending`` (waits for its batch), ``assigned`` (being submitted) or ``flushed``."""
        if self.batch_id is None:
            return "pending"
        return "flushed" if self.flushed_at is not None else "assigned"

    def to_json(self) -> dict[str, Any]:
        """The row as plain JSON types, without the document."""
        return {
            "order_id": self.order_id,
            "project_uuid": self.project_uuid,
            "priority": self.priority,
            "state": self.state,
            "batch_id": self.batch_id,
            "accepted_at": self.accepted_at.isoformat(),
            "flushed_at": self.flushed_at.isoformat() if self.flushed_at else None,
        }


def _row(row: IntakeOrder) -> IntakeRow:
    return IntakeRow(
        row.order_id,
        row.project_uuid,
        row.priority,
        dict(row.document),
        row.accepted_at,
        row.batch_id,
        row.flushed_at,
    )


def accept_order(
    session: Session, *, project_uuid: str, priority: str, document: dict[str, Any]
) -> tuple[IntakeRow, bool]:
    """Store an order unless the project already has one with its id.

    Returns the stored row and whether this call stored it (False: a resend, or
    another order with the same id: the caller compares).
    """
    inserted = session.scalar(
        pg_insert(IntakeOrder)
        .values(
            project_uuid=project_uuid,
            priority=priority,
            order_id=document["order_id"],
            document=document,
        )
        .on_conflict_do_nothing(constraint="uq_intake_orders_project_order")
        .returning(IntakeOrder.id)
    )
    stored = find_order(session, project_uuid, document["order_id"])
    assert stored is not None  # inserted now, or the row that was there
    return stored, inserted is not None


def find_order(session: Session, project_uuid: str, order_id: str) -> IntakeRow | None:
    """The project's accepted order with ``order_id``, or None."""
    row = session.scalar(
        select(IntakeOrder).where(
            IntakeOrder.project_uuid == project_uuid, IntakeOrder.order_id == order_id
        )
    )
    return _row(row) if row is not None else None


def orders_with_id(session: Session, order_id: str) -> list[IntakeRow]:
    """Every project's accepted order with ``order_id`` (a look-up by id alone)."""
    query = select(IntakeOrder).where(IntakeOrder.order_id == order_id).order_by(IntakeOrder.id)
    return [_row(row) for row in session.scalars(query)]


_DUE_GROUPS = text(
    """
    SELECT project_uuid, priority,
           min(accepted_at) <= now() - make_interval(secs => :wait) AS aged
    FROM intake_orders
    WHERE batch_id IS NULL
    GROUP BY project_uuid, priority
    HAVING min(accepted_at) <= now() - make_interval(secs => :wait) OR count(*) >= :size
    """
)


def due_groups(
    session: Session, *, max_wait_seconds: float, size: int
) -> list[tuple[str, str, bool]]:
    """Groups with ``size`` pending orders, or whose oldest waited ``max_wait_seconds``.

    Each as ``(project, priority, aged)``: ``aged`` when the oldest order is due (the
    whole group goes), else only full batches are. By the database's clock, the same
    for every intake process.
    """
    rows = session.execute(_DUE_GROUPS, {"wait": max_wait_seconds, "size": size})
    return [(str(project), str(priority), bool(aged)) for project, priority, aged in rows]


def pending_groups(session: Session) -> list[tuple[str, str]]:
    """Every group with a pending order."""
    query = (
        select(IntakeOrder.project_uuid, IntakeOrder.priority)
        .where(IntakeOrder.batch_id.is_(None))
        .group_by(IntakeOrder.project_uuid, IntakeOrder.priority)
    )
    return [(str(project), str(priority)) for project, priority in session.execute(query)]


_ASSIGN = text(
    """
    WITH claimed AS (
        SELECT id FROM intake_orders
        WHERE batch_id IS NULL AND project_uuid = :project AND priority = :priority
        ORDER BY id LIMIT :limit
        FOR UPDATE SKIP LOCKED
    ), named AS (
        SELECT 'intake-' || min(id)::text AS batch_id FROM claimed
    )
    UPDATE intake_orders o SET batch_id = named.batch_id
    FROM claimed, named WHERE o.id = claimed.id
    RETURNING o.batch_id
    """
)


def assign_group(session: Session, project_uuid: str, priority: str, limit: int) -> str | None:
    """Give up to ``limit`` of the group's oldest pending orders one batch id; return it.

    The id is ``intake-<first row id>``: deterministic (a retried submit of it is
    recognised) and unique (a row is assigned once). None when nothing was free.
    """
    params = {"project": project_uuid, "priority": priority, "limit": limit}
    return session.execute(_ASSIGN, params).scalars().first()


def unflushed_batches(session: Session) -> list[str]:
    """Batch ids assigned but not submitted yet (a flush that did not finish)."""
    query = (
        select(IntakeOrder.batch_id)
        .where(IntakeOrder.batch_id.is_not(None), IntakeOrder.flushed_at.is_(None))
        .distinct()
    )
    return [str(batch_id) for batch_id in session.scalars(query)]


def lock_assigned(session: Session, batch_id: str) -> list[IntakeRow]:
    """The batch's unflushed rows in acceptance order, locked (empty: flushed, or being flushed)."""
    query = (
        select(IntakeOrder)
        .where(IntakeOrder.batch_id == batch_id, IntakeOrder.flushed_at.is_(None))
        .order_by(IntakeOrder.id)
        .with_for_update(skip_locked=True)
    )
    return [_row(row) for row in session.scalars(query)]


def mark_flushed(session: Session, batch_id: str) -> int:
    """Stamp the batch's rows as submitted; return how many."""
    result = session.execute(
        update(IntakeOrder)
        .where(IntakeOrder.batch_id == batch_id, IntakeOrder.flushed_at.is_(None))
        .values(flushed_at=func.now())
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def group_size(session: Session, project_uuid: str, priority: str) -> int:
    """How many orders of one group wait for their batch (an index-only count)."""
    query = (
        select(func.count())
        .select_from(IntakeOrder)
        .where(
            IntakeOrder.batch_id.is_(None),
            IntakeOrder.project_uuid == project_uuid,
            IntakeOrder.priority == priority,
        )
    )
    return int(session.scalar(query) or 0)


def pending_count(session: Session) -> int:
    """How many accepted orders wait for their batch."""
    query = select(func.count()).select_from(IntakeOrder).where(IntakeOrder.batch_id.is_(None))
    return int(session.scalar(query) or 0)
