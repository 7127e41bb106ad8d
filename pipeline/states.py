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


# Every item state is placed in exactly one of these two sets (a unit test pins
# that), so a new state cannot slip past the queries built from them below.
#: Where an order's journey ends; nothing moves it again (FAILED only through recovery).
TERMINAL_ITEM_STATES: Final = frozenset(
    {ItemState.DELIVERED, ItemState.FAILED, ItemState.CANCELLED}
)
#: Still on its way: some stage will pick it up. Open items wait in the work pool
#: whenever no worker holds them and no message is published for them.
OPEN_ITEM_STATES: Final = frozenset(
    {
        ItemState.PENDING,
        ItemState.PREFLIGHT,
        ItemState.WRITING,
        ItemState.QC,
        ItemState.APPROVED,
    }
)
FINAL_BATCH_STATUSES: Final = frozenset(
    {BatchStatus.COMPLETED, BatchStatus.PARTIAL, BatchStatus.FAILED, BatchStatus.CANCELLED}
)

# Legal moves. QC may send an order back to WRITING; FAILED returns to PENDING
# only through recovery. A writing chunk that runs QC itself (``pipeline.fusing``)
# records QC's decision straight from WRITING: APPROVED, FAILED, or WRITING again
# for a rewrite (its output and QC's report stored, the item back in the pool).
# Cancelling a batch ends every order nobody is working on, wherever it waits
# (ARCHITECTURE.md allowed it from PENDING only; an order waiting between stages
# must be cancellable too, or a cancelled batch never ends).
TRANSITIONS: Final[dict[ItemState, frozenset[ItemState]]] = {
    ItemState.PENDING: frozenset({ItemState.PREFLIGHT, ItemState.CANCELLED}),
    ItemState.PREFLIGHT: frozenset({ItemState.WRITING, ItemState.FAILED, ItemState.CANCELLED}),
    ItemState.WRITING: frozenset(
        {
            ItemState.QC,
            ItemState.APPROVED,
            ItemState.WRITING,
            ItemState.FAILED,
            ItemState.CANCELLED,
        }
    ),
    ItemState.QC: frozenset(
        {ItemState.APPROVED, ItemState.WRITING, ItemState.FAILED, ItemState.CANCELLED}
    ),
    ItemState.APPROVED: frozenset({ItemState.DELIVERED, ItemState.FAILED, ItemState.CANCELLED}),
    ItemState.DELIVERED: frozenset(),
    ItemState.FAILED: frozenset({ItemState.PENDING}),
    ItemState.CANCELLED: frozenset(),
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


def state_in_sql(states: frozenset[ItemState], column: str = "state") -> str:
    """A SQL predicate ``<column> IN ('A', 'B')`` over ``states``, in the enum's order.

    The values are the enum's own (upper-case identifiers), never user input, so
    they are inlined: the same text serves queries and partial-index definitions.
    """
    # The enum's order keeps the text identical to the migrations' index predicates.
    values = ", ".join(f"'{state.value}'" for state in ItemState if state in states)
    return f"{column} IN ({values})"


def open_sql(column: str = "state") -> str:
    """SQL: the item is open (some stage will still pick it up).

    Written as "not terminal", the predicate of the partial index ``ix_items_open``,
    so PostgreSQL can answer it from that index; the two sets partition the states.
    """
    return f"NOT ({terminal_sql(column)})"


def terminal_sql(column: str = "state") -> str:
    """SQL: the item's journey has ended."""
    return state_in_sql(TERMINAL_ITEM_STATES, column)


def pooled_sql(prefix: str = "", states: frozenset[ItemState] = OPEN_ITEM_STATES) -> str:
    """SQL: the item waits in the work pool (open, unleased, no message published).

    ``prefix`` qualifies the columns (``"i."``); ``states`` narrows the pool to some
    open states (``pipeline.stage_registry.pooled_kind_sql``). The partial pool
    indexes are defined with this predicate, so queries that use them must repeat it
    exactly.
    """
    return (
        f"{prefix}queued_at IS NULL AND {prefix}lease_owner IS NULL"
        f" AND {state_in_sql(states, prefix + 'state')}"
    )
