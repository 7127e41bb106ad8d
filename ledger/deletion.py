"""Delete a finalized batch in bounded steps: outputs and orders go, receipts stay.

Each :func:`delete_items_step` removes at most ``limit`` orders with their stage
outputs, targets (:mod:`ledger.targets`) and documents (:mod:`ledger.documents`),
so no transaction holds many locks for long and an interrupted delete is continued
by the next call. The delivery receipts and the idempotency keys are not touched:
with the lineage's root batch id and the order id they make the delivery key, so the
same orders submitted again under the same batch id (or its recovery lineage) find
the earlier publish and are not published twice. The caller owns the transaction.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from ledger.documents import forget_item_documents
from ledger.models import Batch, DeliveryReceipt
from ledger.targets import forget_item_targets

_STEP_ITEMS = text(
    """
    SELECT id FROM items WHERE batch_id = :batch_id ORDER BY id LIMIT :limit FOR UPDATE
    """
)
_DELETE_OUTPUTS = text("DELETE FROM stage_outputs WHERE item_id = ANY(:ids)")
_DELETE_ITEMS = text("DELETE FROM items WHERE id = ANY(:ids)")
_RECOVERIES = text(
    """
    SELECT id FROM batches
    WHERE (origin_batch_id = :batch_id OR root_batch_id = :batch_id) AND id <> :batch_id
    ORDER BY id
    """
)


def deletion_refusal(session: Session, batch_id: str) -> str | None:
    """Why ``batch_id`` may not be deleted now (None: it may).

    Only a finalized batch may go, and only once no recovery refers to it (the
    recoveries' orders point at its orders).
    """
    batch = session.get(Batch, batch_id)
    if batch is None:
        return None
    if batch.finalized_at is None:
        return f"batch {batch_id!r} is still open ({batch.status}): cancel it or let it finish"
    recoveries = list(session.scalars(_RECOVERIES, {"batch_id": batch_id}))
    if recoveries:
        return f"batch {batch_id!r} has recoveries ({', '.join(recoveries)}): delete them first"
    return None


def delete_items_step(session: Session, batch_id: str, limit: int) -> tuple[int, int]:
    """Delete up to ``limit`` of the batch's orders and their outputs: ``(orders, outputs)``."""
    ids = [
        int(item_id)
        for item_id in session.scalars(_STEP_ITEMS, {"batch_id": batch_id, "limit": limit})
    ]
    if not ids:
        return 0, 0
    outputs = session.execute(_DELETE_OUTPUTS, {"ids": ids}).rowcount  # type: ignore[attr-defined]
    forget_item_targets(session, ids)
    forget_item_documents(session, ids)
    session.execute(_DELETE_ITEMS, {"ids": ids})
    return len(ids), int(outputs)


def delete_batch_row(session: Session, batch_id: str) -> dict[str, Any]:
    """Delete the batch's event log and its row, once its orders are gone.

    The events go too: the one-finalize-per-batch index would otherwise stop the
    same id, submitted again, from ever finalizing. Returns the receipts kept.
    """
    kept = session.scalar(
        select(func.count())
        .select_from(DeliveryReceipt)
        .where(DeliveryReceipt.batch_id == batch_id)
    )
    session.execute(text("DELETE FROM events WHERE batch_id = :b"), {"b": batch_id})
    session.execute(text("DELETE FROM batches WHERE id = :b"), {"b": batch_id})
    return {"receipts_kept": int(kept or 0)}
