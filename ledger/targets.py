"""The insert-only table of order targets behind preflight's history look-up.

Preflight asks "which of this customer's orders of these target pages were placed
in the window?". Answered from ``items`` that needs an index on
``(customer_id, document->>'target_url', created_at)``, whose keys arrive in random
order and which every new row version of an item (about a dozen per order) writes
again. ``order_targets`` holds the same three values once per order, written when
the order is stored and never updated, so the look-up's index costs one entry per
order. Rows go only with their items (:mod:`ledger.deletion`). The caller owns the
transaction.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.orm import Session

# Copied from the stored items and their documents (:mod:`ledger.documents`, stored
# first), so the table says exactly what they do (the same text of the target, the
# same created_at) whatever path inserted them.
_RECORD_BATCH = text(
    """
    INSERT INTO order_targets (item_id, customer_id, target_url, created_at)
    SELECT i.id, i.customer_id, d.document ->> 'target_url', i.created_at
    FROM items i JOIN order_documents d ON d.item_id = i.id
    WHERE i.batch_id = :batch_id
    ON CONFLICT (item_id) DO NOTHING
    """
)
_RECORD_ITEMS = text(
    """
    INSERT INTO order_targets (item_id, customer_id, target_url, created_at)
    SELECT i.id, i.customer_id, d.document ->> 'target_url', i.created_at
    FROM items i JOIN order_documents d ON d.item_id = i.id
    WHERE i.id = ANY(:ids)
    ON CONFLICT (item_id) DO NOTHING
    """
)
_FORGET_ITEMS = text("DELETE FROM order_targets WHERE item_id = ANY(:ids)")


def record_batch_targets(session: Session, batch_id: str) -> None:
    """Record the targets of every stored order of ``batch_id`` (in the insert's transaction)."""
    session.execute(_RECORD_BATCH, {"batch_id": batch_id})


def record_item_targets(session: Session, item_ids: Sequence[int]) -> None:
    """Record the targets of the stored orders ``item_ids`` (those already recorded stay)."""
    if item_ids:
        session.execute(_RECORD_ITEMS, {"ids": list(item_ids)})


def forget_item_targets(session: Session, item_ids: Sequence[int]) -> None:
    """Remove the targets of ``item_ids``, whose orders are being deleted."""
    if item_ids:
        session.execute(_FORGET_ITEMS, {"ids": list(item_ids)})
