"""HTTP API keys in the ledger: create, list, revoke, and look up the caller of a token.

Only a salted hash of each key's secret is stored (``pipeline.api_access``). The
caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ledger.models import ApiKey
from pipeline.api_access import Principal, Scope, new_key, secret_matches, split_token


def create_key(
    session: Session, *, name: str, scope: Scope, projects: Sequence[str] = ()
) -> tuple[str, str]:
    """Store a new key; return ``(token, key_id)``. The token is never stored: show it once."""
    key = new_key()
    session.add(
        ApiKey(
            key_id=key.key_id,
            name=name,
            scope=scope.value,
            projects=sorted(set(projects)),
            salt=key.salt,
            secret_hash=key.secret_hash,
        )
    )
    session.flush()
    return key.token, key.key_id


def list_keys(session: Session) -> list[dict[str, Any]]:
    """Every key (revoked ones too), oldest first, without salts or hashes."""
    rows = session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.key_id))
    return [
        {
            "key_id": row.key_id,
            "name": row.name,
            "scope": row.scope,
            "projects": list(row.projects),
            "created_at": row.created_at.isoformat(),
            "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
        }
        for row in rows
    ]


def revoke_key(session: Session, key_id: str) -> bool:
    """Revoke a key from now on; False when no unrevoked key has this id."""
    result = session.execute(
        update(ApiKey)
        .where(ApiKey.key_id == key_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def principal_for(session: Session, token: str) -> Principal | None:
    """The caller ``token`` stands for, or None (malformed, unknown, wrong secret, revoked)."""
    parts = split_token(token)
    if parts is None:
        return None
    key_id, secret = parts
    row = session.get(ApiKey, key_id)
    if row is None or row.revoked_at is not None:
        return None
    if not secret_matches(row.salt, secret, row.secret_hash):
        return None
    return Principal(row.key_id, row.name, Scope(row.scope), frozenset(row.projects))
