"""System-wide switches in the ledger: halt all claiming, and resume.

The caller owns the transaction.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from ledger.batches import add_event
from ledger.models import Control

HALT = "halt"


def halt(session: Session, *, reason: str, data: dict[str, Any] | None = None) -> bool:
    """Switch on the halt; return False if it was already on (the first reason is kept)."""
    inserted = session.execute(
        pg_insert(Control)
        .values(name=HALT, reason=reason, data=data or {})
        .on_conflict_do_nothing()
        .returning(Control.name)
    ).first()
    if inserted is not None:
        add_event(session, batch_id=None, kind="halted", data={"reason": reason, **(data or {})})
    return inserted is not None


def resume(session: Session, *, operator: str) -> bool:
    """Switch the halt off; return False if it was not on."""
    removed = session.execute(delete(Control).where(Control.name == HALT).returning(Control.name))
    if removed.first() is None:
        return False
    add_event(session, batch_id=None, kind="resumed_all", data={"operator": operator})
    return True


def halt_reason(session: Session) -> str | None:
    """The reason of the current halt, or ``None`` when work may be claimed."""
    return session.scalar(select(Control.reason).where(Control.name == HALT))
