"""The orders' JSON, one insert-only row per item (``order_documents``, migration 0019).

Every state change of an item writes a new row version of ``items``; the order's
document never changes while the order moves, so it lives here, written once with
the item (submission, recovery), read by a claim's join and by preflight's history,
rewritten only by retention's pruning of the free-form metadata, and deleted with
the item (:mod:`ledger.deletion`). The caller owns the transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from ledger.db import copy_rows

# A recovery item's order is its failed item's: copied by the id it recovers.
_COPY_RECOVERED = text(
    """
    INSERT INTO order_documents (item_id, document)
    SELECT i.id, d.document FROM items i JOIN order_documents d ON d.item_id = i.recovers_item_id
    WHERE i.id = ANY(:ids)
    ON CONFLICT (item_id) DO NOTHING
    """
)
_FORGET = text("DELETE FROM order_documents WHERE item_id = ANY(:ids)")


def store_documents(session: Session, rows: Iterable[tuple[int, dict[str, Any]]]) -> None:
    """Store ``(item id, document)`` pairs with ``COPY``: one round trip for a whole batch."""
    pairs = ((item_id, json.dumps(document)) for item_id, document in rows)
    copy_rows(session, "order_documents (item_id, document)", pairs)


def copy_recovered_documents(session: Session, item_ids: Sequence[int]) -> None:
    """Give the recovery items ``item_ids`` the documents of the items they recover."""
    if item_ids:
        session.execute(_COPY_RECOVERED, {"ids": list(item_ids)})


def forget_item_documents(session: Session, item_ids: Sequence[int]) -> None:
    """Remove the documents of ``item_ids``, whose orders are being deleted."""
    if item_ids:
        session.execute(_FORGET, {"ids": list(item_ids)})
