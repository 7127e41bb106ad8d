"""Does a batch's reported progress agree with the ledger? (integration and chaos tests)."""

from __future__ import annotations

from sqlalchemy import select

from ledger.batches import state_counts
from ledger.db import transaction
from ledger.models import Batch

#: The counters ``get_batch_status`` reports that the ledger can confirm exactly.
COUNTED = ("total", "completed", "failed", "cancelled")


def ledger_progress(batch_id: str) -> dict[str, int]:
    """What the ledger says: items in all, delivered, failed and cancelled."""
    with transaction() as session:
        counts = state_counts(session, batch_id)
    return {
        "total": sum(counts.values()),
        "completed": counts.get("DELIVERED", 0),
        "failed": counts.get("FAILED", 0),
        "cancelled": counts.get("CANCELLED", 0),
    }


def reported_progress(batch_id: str) -> dict[str, int]:
    """What ``get_batch_status`` says, for the same counters."""
    from tasks.status import batch_status

    status = batch_status(batch_id)
    return {name: int(status[name]) for name in COUNTED}


def progress_mismatches(batch_ids: list[str] | None = None) -> dict[str, str]:
    """Batches (all of them by default) whose reported counters differ from the ledger's."""
    if batch_ids is None:
        with transaction() as session:
            batch_ids = [str(b) for b in session.scalars(select(Batch.id).order_by(Batch.id))]
    found: dict[str, str] = {}
    for batch_id in batch_ids:
        reported, truth = reported_progress(batch_id), ledger_progress(batch_id)
        if reported != truth:
            found[batch_id] = f"reported {reported}, ledger {truth}"
    return found
