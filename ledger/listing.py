"""Pages of batches and of a batch's orders, for the HTTP API (keyset pagination).

Each page is one indexed query that starts strictly after the previous page's last
row, so a page costs the same however deep it is. The caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.orm import Session

from ledger.models import Batch, Item


@dataclass(frozen=True)
class BatchFilter:
    """What ``GET /v1/batches`` narrows by; ``projects`` empty means every project."""

    status: str | None = None
    priority: str | None = None
    project: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    projects: Collection[str] = field(default_factory=frozenset)


def batch_page(
    session: Session, where: BatchFilter, *, limit: int, after: tuple[datetime, str] | None
) -> list[dict[str, Any]]:
    """Up to ``limit`` batches, newest first, strictly after ``(created_at, id)`` ``after``."""
    query = _filtered(select(Batch), where).order_by(Batch.created_at.desc(), Batch.id.desc())
    if after is not None:
        created, batch_id = after
        query = query.where(
            or_(
                Batch.created_at < created,
                and_(Batch.created_at == created, Batch.id < batch_id),
            )
        )
    return [batch_summary(batch) for batch in session.scalars(query.limit(limit))]


def _filtered(query: Select[Any], where: BatchFilter) -> Select[Any]:
    if where.status is not None:
        query = query.where(Batch.status == where.status.upper())
    if where.priority is not None:
        query = query.where(Batch.priority == where.priority)
    if where.project is not None:
        query = query.where(Batch.project_uuid == where.project)
    if where.projects:
        query = query.where(Batch.project_uuid.in_(sorted(where.projects)))
    if where.created_after is not None:
        query = query.where(Batch.created_at >= where.created_after)
    if where.created_before is not None:
        query = query.where(Batch.created_at < where.created_before)
    return query


def batch_summary(batch: Batch) -> dict[str, Any]:
    """A batch's ledger row as the API lists it."""
    return {
        "batch_id": batch.id,
        "project_uuid": batch.project_uuid,
        "priority": batch.priority,
        "status": batch.status.lower(),
        "total": batch.total_items,
        "created_at": batch.created_at.isoformat(),
        "finalized_at": batch.finalized_at.isoformat() if batch.finalized_at else None,
        "origin_batch_id": batch.origin_batch_id,
    }


def batch_project(session: Session, batch_id: str) -> str | None:
    """The project of ``batch_id``, or None when there is no such batch."""
    return session.scalar(select(Batch.project_uuid).where(Batch.id == batch_id))


def order_page(
    session: Session, batch_id: str, *, state: str | None, limit: int, after: int | None
) -> list[dict[str, Any]]:
    """Up to ``limit`` orders of ``batch_id`` in submission order, after position ``after``."""
    query = select(Item).where(Item.batch_id == batch_id)
    if state is not None:
        query = query.where(Item.state == state.upper())
    if after is not None:
        query = query.where(Item.position > after)
    rows = session.scalars(query.order_by(Item.position).limit(limit))
    return [
        {
            "order_id": item.order_id,
            "position": item.position,
            "state": item.state.lower(),
            "attempts": item.attempts,
            "error_class": item.error_class,
            "error_message": item.error_message,
            "customer_id": item.customer_id,
            "publisher_domain": item.publisher_domain,
            "updated_at": item.updated_at.isoformat(),
        }
        for item in rows
    ]
