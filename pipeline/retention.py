"""Retention per checkpoint kind (the batch guide's checkpoint table), pure.

=============  ===========================================  ===============
kind           what it is in batchline                      default
=============  ===========================================  ===============
``received``   the order's free-form ``metadata`` as the    30 days
               customer sent it (``order_documents``); the
               identifying fields (customer, target, anchor,
               publisher, language, topic, deadline) stay:
               QC reports, receipts and preflight's history
               refer to them
``preflight``  preflight's successful outputs (matrix and   90 days
               writer prompt)
``writing``    writing's successful outputs (every draft)   180 days
``qc``         QC reports, rewrites included                for ever
``delivery``   delivery outputs; ``delivery_receipts`` is   for ever
               never pruned
=============  ===========================================  ===============

Failure records (stage outputs with ``ok = false`` other than QC's) are kept:
they are small and analysis reads them. Only orders whose journey ended
(DELIVERED, FAILED, CANCELLED) in a finalized batch are pruned; a pruned
output is replaced by a tombstone that says what was there and when it went.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final


@dataclass(frozen=True)
class CheckpointKind:
    """One kind of checkpoint: its name and the stage whose outputs it is (None: the order)."""

    name: str
    stage: str | None


KINDS: Final[tuple[CheckpointKind, ...]] = (
    CheckpointKind("received", None),
    CheckpointKind("preflight", "preflight"),
    CheckpointKind("writing", "writing"),
    CheckpointKind("qc", "qc"),
    CheckpointKind("delivery", "delivery"),
)


def cutoff(now: datetime, days: int) -> datetime | None:
    """Checkpoints created before this moment are expired (None: kept for ever)."""
    return None if days <= 0 else now - timedelta(days=days)


def tombstone(kind: str, pruned_at: datetime) -> dict[str, Any]:
    """What a pruned checkpoint is replaced with."""
    return {"pruned": True, "kind": kind, "pruned_at": pruned_at.isoformat()}


def is_pruned(output: Any) -> bool:
    """Whether a stored output (or metadata) is a tombstone."""
    return isinstance(output, dict) and output.get("pruned") is True


def describe(output: dict[str, Any]) -> str:
    """One line for a pruned checkpoint, e.g. ``pruned on 2026-01-31 (writing retention)``."""
    day = str(output.get("pruned_at", ""))[:10]
    return f"pruned on {day} ({output.get('kind', '?')} retention)"
