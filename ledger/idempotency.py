"""Remembered external effects: an idempotency key and the result it produced, with a TTL.

The caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from ledger.models import DeliveryReceipt, IdempotencyKey


def remembered(session: Session, key: str) -> dict[str, Any] | None:
    """The stored result of the effect with ``key``, unless it is unknown or expired."""
    query = select(IdempotencyKey.result).where(
        IdempotencyKey.key == key, IdempotencyKey.expires_at > func.now()
    )
    result = session.scalar(query)
    return dict(result) if result is not None else None


def remember(
    session: Session, *, key: str, scope: str, result: dict[str, Any], ttl_hours: int
) -> dict[str, Any]:
    """Store ``result`` under ``key`` (the first stored result wins) and return the stored one."""
    session.execute(
        pg_insert(IdempotencyKey)
        .values(
            key=key,
            scope=scope,
            result=result,
            expires_at=func.now() + text(f"interval '{int(ttl_hours)} hours'"),
        )
        .on_conflict_do_nothing()
    )
    return remembered(session, key) or result


def remembered_many(session: Session, keys: Collection[str]) -> dict[str, dict[str, Any]]:
    """The stored, unexpired results of ``keys`` (unknown keys are left out), in one query."""
    query = select(IdempotencyKey.key, IdempotencyKey.result).where(
        IdempotencyKey.key.in_(list(keys)), IdempotencyKey.expires_at > func.now()
    )
    return {str(key): dict(result) for key, result in session.execute(query)}


def receipts_by_key(session: Session, keys: Collection[str]) -> dict[str, dict[str, Any]]:
    """The stored delivery receipts of ``keys`` (never expire, outlive a deleted batch).

    The fallback for delivery keys whose ``idempotency_keys`` row expired: a receipt
    is kept for ever, so an order published once is never published again.
    """
    if not keys:
        return {}
    query = select(DeliveryReceipt.idempotency_key, DeliveryReceipt.receipt).where(
        DeliveryReceipt.idempotency_key.in_(list(keys))
    )
    return {str(key): dict(receipt) for key, receipt in session.execute(query)}
