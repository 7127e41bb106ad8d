"""Prune expired checkpoints in bounded batches: short transactions, rows locked only briefly.

Each call rewrites at most ``limit`` rows of one kind past ``after`` (an id
cursor), with ``FOR UPDATE SKIP LOCKED``: a row a worker holds is skipped, not
waited for. Only orders in a terminal state of a finalized batch are touched.
The caller owns the transaction.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from pipeline.states import terminal_sql

_TERMINAL = terminal_sql("i.state")

_PRUNE_OUTPUTS = text(
    f"""
    WITH doomed AS (
        SELECT o.id FROM stage_outputs o
        JOIN items i ON i.id = o.item_id JOIN batches b ON b.id = i.batch_id
        WHERE o.id > :after AND o.stage = :stage AND (o.ok OR o.stage = 'qc')
          AND o.created_at < :cutoff AND NOT (o.output @> '{{"pruned": true}}')
          AND {_TERMINAL} AND b.finalized_at IS NOT NULL
        ORDER BY o.id LIMIT :limit
        FOR UPDATE OF o SKIP LOCKED
    )
    UPDATE stage_outputs o SET output = CAST(:tombstone AS jsonb)
    FROM doomed WHERE o.id = doomed.id
    RETURNING o.id
    """
)

_PRUNE_RECEIVED = text(
    f"""
    WITH doomed AS (
        SELECT i.id FROM items i JOIN batches b ON b.id = i.batch_id
        JOIN order_documents d ON d.item_id = i.id
        WHERE i.id > :after AND i.created_at < :cutoff
          AND {_TERMINAL} AND b.finalized_at IS NOT NULL
          AND d.document->'metadata' IS NOT NULL AND d.document->'metadata' <> '{{}}'::jsonb
          AND NOT (d.document->'metadata' @> '{{"pruned": true}}')
        ORDER BY i.id LIMIT :limit
        FOR UPDATE OF d SKIP LOCKED
    )
    UPDATE order_documents d
    SET document = jsonb_set(d.document, '{{metadata}}', CAST(:tombstone AS jsonb))
    FROM doomed WHERE d.item_id = doomed.id
    RETURNING d.item_id
    """
)


def prune_batch(
    session: Session,
    *,
    stage: str | None,
    cutoff: datetime,
    tombstone: dict[str, Any],
    after: int,
    limit: int,
) -> list[int]:
    """Replace up to ``limit`` expired checkpoints past id ``after`` with ``tombstone``.

    ``stage`` None prunes the orders' received metadata, else that stage's outputs.
    Returns the ids rewritten (the next call's cursor is their maximum).
    """
    params: dict[str, Any] = {
        "after": after,
        "cutoff": cutoff,
        "limit": limit,
        "tombstone": json.dumps(tombstone),
    }
    if stage is None:
        return sorted(int(i) for i in session.scalars(_PRUNE_RECEIVED, params))
    return sorted(int(i) for i in session.scalars(_PRUNE_OUTPUTS, {**params, "stage": stage}))
