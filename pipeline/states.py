"""Item and batch states, and the one table of legal item transitions.

The ledger enforces these with conditional updates; this module is the source of
truth for which moves exist (as Celery keeps its states in ``states.py``).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class ItemState(StrEnum):
    """Where one order is in the pipeline; the name is the stage it is in."""

    PENDING = "PENDING"
    PREFLIGHT = "PREFLIGHT"
    WRITING = "WRITING"
    QC = "QC"
    APPROVED = "APPROVED"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class BatchStatus(StrEnum):
    """A batch's lifecycle; the last four are final and reached exactly once."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    COMPLETED = "COMPLETED"
    PARTIAL = "PARTIAL"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


TERMINAL_ITEM_STATES: Final = frozenset(
    {ItemState.DELIVERED, ItemState.FAILED, ItemState.CANCELLED}
)
FINAL_BATCH_STATUSES: Final = frozenset(
    {BatchStatus.COMPLETED, BatchStatus.PARTIAL, BatchStatus.FAILED, BatchStatus.CANCELLED}
)

# Legal moves. QC may send an order back to WRITING; FAILED returns to PENDING
# only through recovery. Cancelling a batch ends every order nobody is working
# on, wherever it waits (ARCHITECTURE.md allowed it from PENDING only; an order
# waiting between stages must be cancellable too, or a cancelled batch never ends).
TRANSITIONS: Final[dict[ItemState, frozenset[ItemState]]] = {
    ItemState.PENDING: frozenset({ItemState.PREFLIGHT, ItemState.CANCELLED}),
    ItemState.PREFLIGHT: frozenset({ItemState.WRITING, ItemState.FAILED, ItemState.CANCELLED}),
    ItemState.WRITING: frozenset({ItemState.QC, ItemState.FAILED, ItemState.CANCELLED}),
    ItemState.QC: frozenset(
        {ItemState.APPROVED, ItemState.WRITING, ItemState.FAILED, ItemState.CANCELLED}
    ),
    ItemState.APPROVED: frozenset({ItemState.DELIVERED, ItemState.FAILED, ItemState.CANCELLED}),
    ItemState.DELIVERED: frozenset(),
    ItemState.FAILED: frozenset({ItemState.PENDING}),
    ItemState.CANCELLED: frozenset(),
}

# The state an item is in while a stage works on it, and where success leads.
STAGE_STATE: Final[dict[str, ItemState]] = {
    "preflight": ItemState.PREFLIGHT,
    "writing": ItemState.WRITING,
    "qc": ItemState.QC,
    "delivery": ItemState.APPROVED,
}
STAGE_SUCCESS: Final[dict[str, ItemState]] = {
    "preflight": ItemState.WRITING,
    "writing": ItemState.QC,
    "qc": ItemState.APPROVED,
    "delivery": ItemState.DELIVERED,
}
#: Which stage picks up an item waiting in each state.
STAGE_FOR_STATE: Final[dict[ItemState, str]] = {
    ItemState.PENDING: "preflight",
    ItemState.PREFLIGHT: "preflight",
    ItemState.WRITING: "writing",
    ItemState.QC: "qc",
    ItemState.APPROVED: "delivery",
}
NEXT_STAGE: Final[dict[str, str | None]] = {
    "preflight": "writing",
    "writing": "qc",
    "qc": "delivery",
    "delivery": None,
}


class IllegalTransition(ValueError):
    """Raised when code asks for a move the transition table does not allow."""


def is_legal(current: ItemState, target: ItemState) -> bool:
    """Return whether ``current -> target`` is in the transition table."""
    return target in TRANSITIONS[current]


def check_transition(current: ItemState, target: ItemState) -> None:
    """Raise :class:`IllegalTransition` unless ``current -> target`` is legal."""
    if not is_legal(current, target):
        raise IllegalTransition(f"illegal item transition {current} -> {target}")


def final_batch_status(delivered: int, failed: int, cancelled: int) -> BatchStatus:
    """Decide how a batch ends from the counts of its terminal items.

    Any cancelled item means the batch was cancelled; otherwise all delivered is
    COMPLETED, none delivered is FAILED, and a mix is PARTIAL.
    """
    if cancelled:
        return BatchStatus.CANCELLED
    if failed == 0:
        return BatchStatus.COMPLETED
    return BatchStatus.FAILED if delivered == 0 else BatchStatus.PARTIAL
