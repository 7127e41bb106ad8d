"""Recovery lineage in the ledger: which batch recovers which, which item recovers which.

A recovery batch names its origin (the batch it recovers), its lineage's root (the
batch the orders were first submitted in) and its round; each recovery item names
the failed item it recovers (unique: an item is recovered once) and the lineage's
root item. The caller owns the transaction; each function is one statement.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from ledger.batches import add_event
from ledger.documents import copy_recovered_documents
from ledger.models import Batch
from ledger.targets import record_item_targets
from pipeline.recovery import FailedItem, Pick
from pipeline.states import BatchStatus

#: Namespace of recovery batches' task ids (uuid5 of the batch id: the same on a rerun).
TASK_ID_NAMESPACE = uuid.UUID("6f1d7c8e-3a51-4d0b-9c39-0b1f5e2a7d41")


@dataclass(frozen=True)
class Origin:
    """The batch being recovered, as a recovery needs it."""

    batch_id: str
    status: str
    finished: bool
    priority: str
    project_uuid: str
    options: dict[str, Any]
    root_batch_id: str


@dataclass(frozen=True)
class NamedItem:
    """An item ``order_ids`` named: its order and its state."""

    order_id: str
    state: str


def find_origin(session: Session, batch_id: str) -> Origin | None:
    """The batch ``batch_id`` with its lineage root, or None."""
    batch = session.get(Batch, batch_id)
    if batch is None:
        return None
    return Origin(
        batch_id=batch.id,
        status=batch.status,
        finished=batch.finalized_at is not None,
        priority=batch.priority,
        project_uuid=batch.project_uuid,
        options=dict(batch.options),
        root_batch_id=batch.root_batch_id or batch.id,
    )


def lock_lineage(session: Session, root_batch_id: str) -> None:
    """Serialise recoveries of one lineage until the transaction ends.

    Two racing recoveries then see each other's items: the second finds them
    recovered and creates nothing (the unique constraints back this up).
    """
    session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:root, 0))"), {"root": root_batch_id}
    )


_FAILED_SELECT = """
    SELECT i.id, i.order_id, i.state, f.stage, f.output ->> 'category',
           EXISTS (SELECT 1 FROM items r WHERE r.recovers_item_id = i.id)
    FROM items i
    LEFT JOIN LATERAL (
        -- The failure itself: the item's newest failed output that is not a QC rewrite.
        SELECT o.stage, o.output FROM stage_outputs o
        WHERE o.item_id = i.id AND NOT o.ok AND NOT (o.output ? 'rewrite')
        ORDER BY o.id DESC LIMIT 1
    ) f ON true
"""
_FAILED = text(_FAILED_SELECT + " WHERE i.batch_id = :b AND i.state = 'FAILED' ORDER BY i.position")
_NAMED = text(
    _FAILED_SELECT + " WHERE i.batch_id = :b AND i.order_id = ANY(:orders) ORDER BY i.position"
)


def failed_items(
    session: Session, batch_id: str, order_ids: Sequence[str] | None = None
) -> tuple[list[FailedItem], list[NamedItem]]:
    """The batch's failed items (only those of ``order_ids`` when given) and every named item.

    One statement; the second list lets the caller find unknown and unfailed names.
    """
    if order_ids is None:
        rows = session.execute(_FAILED, {"b": batch_id})
    else:
        rows = session.execute(_NAMED, {"b": batch_id, "orders": list(order_ids)})
    failed: list[FailedItem] = []
    named: list[NamedItem] = []
    for item_id, order_id, state, stage, category, recovered in rows:
        named.append(NamedItem(str(order_id), str(state)))
        if state == "FAILED":
            failed.append(FailedItem(int(item_id), str(order_id), stage, category, recovered))
    return failed, named


def next_round(session: Session, root_batch_id: str) -> int:
    """The lineage's next recovery round (1 for the first recovery)."""
    query = text(
        "SELECT coalesce(max(recovery_round), 0) + 1 FROM batches WHERE root_batch_id = :root"
    )
    return int(session.execute(query, {"root": root_batch_id}).scalar_one())


def recovery_task_id(recovery_batch_id: str) -> str:
    """The recovery batch's handle (its ``task_id``), derived from its id."""
    return uuid.uuid5(TASK_ID_NAMESPACE, recovery_batch_id).hex


def insert_recovery_batch(
    session: Session,
    *,
    origin: Origin,
    recovery_batch_id: str,
    recovery_round: int,
    lane: str,
    max_retries: int,
    picks: Sequence[Pick],
) -> None:
    """Insert the recovery batch (RUNNING) with its link to the origin and the lineage."""
    digest = hashlib.sha256(
        ",".join([recovery_batch_id, *(str(p.item_id) for p in picks)]).encode()
    ).hexdigest()
    options = {**origin.options, "batch_id": recovery_batch_id, "max_retries": max_retries}
    session.add(
        Batch(
            id=recovery_batch_id,
            project_uuid=origin.project_uuid,
            priority=lane,
            status=BatchStatus.RUNNING,
            options=options,
            manifest_sha256=digest,
            total_items=len(picks),
            task_id=recovery_task_id(recovery_batch_id),
            origin_batch_id=origin.batch_id,
            root_batch_id=origin.root_batch_id,
            recovery_round=recovery_round,
        )
    )
    session.flush()


_INSERT_ITEMS = text(
    """
    INSERT INTO items (batch_id, position, order_id, customer_id, publisher_domain, deadline,
                       state, attempts, lane, score, fair_rank, origin_item_id, recovers_item_id)
    SELECT :batch_id, p.ord - 1, i.order_id, i.customer_id, i.publisher_domain, i.deadline,
           p.state, 0, :lane, i.score, i.fair_rank, coalesce(i.origin_item_id, i.id), i.id
    FROM unnest(CAST(:ids AS bigint[]), CAST(:states AS text[])) WITH ORDINALITY
         AS p(item_id, state, ord)
    JOIN items i ON i.id = p.item_id
    ORDER BY p.ord
    ON CONFLICT (recovers_item_id) WHERE recovers_item_id IS NOT NULL DO NOTHING
    RETURNING id
    """
)


def insert_recovery_items(
    session: Session, *, recovery_batch_id: str, lane: str, picks: Sequence[Pick]
) -> int:
    """Copy each picked failed item into the recovery batch, in its resume state, in the pool.

    One ``INSERT ... SELECT``; an item some recovery already took is left out (the
    unique ``recovers_item_id``). Returns how many items were inserted.
    """
    params = {
        "batch_id": recovery_batch_id,
        "lane": lane,
        "ids": [p.item_id for p in picks],
        "states": [p.state.value for p in picks],
    }
    inserted = [int(item_id) for (item_id,) in session.execute(_INSERT_ITEMS, params)]
    copy_recovered_documents(session, inserted)
    record_item_targets(session, inserted)
    return len(inserted)


def record_recovery_events(
    session: Session,
    *,
    origin: Origin,
    recovery_batch_id: str,
    recovery_round: int,
    data: dict[str, Any],
) -> None:
    """Events on both batches: the origin was recovered by, the recovery recovers."""
    link = {"recovery_round": recovery_round, "root_batch_id": origin.root_batch_id}
    add_event(
        session,
        batch_id=origin.batch_id,
        kind="recovered_by",
        data={"recovery_batch_id": recovery_batch_id, **link, **data},
    )
    add_event(
        session,
        batch_id=recovery_batch_id,
        kind="recovery_of",
        data={"origin_batch_id": origin.batch_id, **link, **data},
    )


def lineage_root(session: Session, batch_id: str) -> str:
    """The batch the lineage of ``batch_id`` began with (``batch_id`` itself for an original)."""
    query = select(Batch.root_batch_id).where(Batch.id == batch_id)
    return session.scalar(query) or batch_id


_LINKS = text(
    """
    SELECT b.origin_batch_id, coalesce(b.root_batch_id, b.id), b.recovery_round,
           coalesce((SELECT array_agg(r.id ORDER BY r.recovery_round) FROM batches r
                     WHERE r.origin_batch_id = b.id), '{}')
    FROM batches b WHERE b.id = :b
    """
)


def lineage_links(session: Session, batch_id: str) -> dict[str, Any]:
    """``origin_batch_id``, ``root_batch_id``, ``recovery_round`` and ``recovered_by`` (ids)."""
    row = session.execute(_LINKS, {"b": batch_id}).first()
    if row is None:
        return {}
    origin, root, recovery_round, recovered_by = row
    return {
        "origin_batch_id": origin,
        "root_batch_id": root,
        "recovery_round": recovery_round,
        "recovered_by": list(recovered_by),
    }


_RECOVERY_FINALIZED = text(
    """
    INSERT INTO events (batch_id, kind, data)
    SELECT origin_batch_id, 'recovery_finalized',
           jsonb_build_object('recovery_batch_id', id, 'status', CAST(:status AS text))
    FROM batches WHERE id = :b AND origin_batch_id IS NOT NULL
    """
)


def note_recovery_finalized(session: Session, batch_id: str, status: str) -> None:
    """When a recovery batch ends, say so on its origin too (nothing for an original)."""
    session.execute(_RECOVERY_FINALIZED, {"b": batch_id, "status": status})
