"""The four stages, one frozen record each: the only place a stage is described.

Everything that differs between stages (which state it works in, where success
leads, whose stored output it reads, how big its chunks are, whether it holds
concurrency slots, how long a scheduled run may take) is a field here. Code
elsewhere asks the record (``stage.terminal_success``), never compares a stage's
name. The tasks side pairs each record with its preparer and handler in
``tasks.stage_runtime``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from pipeline.states import OPEN_ITEM_STATES, ItemState, pooled_sql, state_in_sql


@dataclass(frozen=True)
class Stage:
    """One stage of an order's journey; defaults of its settings live here too."""

    name: str
    #: the state an item is in while this stage works on it
    work_state: ItemState
    #: states this stage claims an item from (the first stage also takes new items)
    entry_states: frozenset[ItemState]
    #: where an item goes when this stage succeeds
    success_state: ItemState
    #: the stage whose stored output this one reads (None: only the order)
    input_stage: str | None
    #: success ends the order (delivery): counts as delivered and may finish the batch
    terminal_success: bool
    #: default chunk sizes (``BATCH_CHUNK_<STAGE>_OPTIMAL`` / ``_MAX``), from the batch guide
    chunk_optimal: int
    chunk_max: int
    #: by default holds a global and a per-customer slot during its calls (the writer's LLM)
    capped: bool
    #: by default also holds a slot of the order's publisher domain (its site takes the load)
    publisher_capped: bool
    #: its items wait on outside services (an LLM, a publisher's webhook): a chunk runs
    #: their calls concurrently (``BATCH_IO_CONCURRENCY``) instead of one after another
    io_bound: bool
    #: the guide's time limit for one scheduled run of the stage, in seconds
    scheduled_time_limit: int
    #: the stage a rejection that a rewrite can fix sends the item back to (QC: writing)
    rewrite_stage: str | None = None
    #: the circuit breaker its calls go through (``pipeline.breaker``): ``writer``, or
    #: ``publisher`` (one circuit per publisher domain); None: it calls nobody
    circuit: str | None = None

    @property
    def task_name(self) -> str:
        """The Celery task that runs this stage's chunks."""
        return stage_task_name(self.name)


def stage_task_name(stage: str) -> str:
    """The Celery task name of the stage called ``stage``: ``batchline.stage.<stage>``."""
    return f"batchline.stage.{stage}"


PREFLIGHT: Final = Stage(
    name="preflight",
    work_state=ItemState.PREFLIGHT,
    entry_states=frozenset({ItemState.PENDING, ItemState.PREFLIGHT}),
    success_state=ItemState.WRITING,
    input_stage=None,
    terminal_success=False,
    chunk_optimal=10,
    chunk_max=25,
    capped=False,
    publisher_capped=False,
    io_bound=False,
    scheduled_time_limit=30 * 60,
)
WRITING: Final = Stage(
    name="writing",
    work_state=ItemState.WRITING,
    entry_states=frozenset({ItemState.WRITING}),
    success_state=ItemState.QC,
    input_stage="preflight",
    terminal_success=False,
    # The guide's 5 / 10 assumed one call after another. A chunk's calls now run
    # concurrently, so a chunk is the unit of concurrency: two worker processes
    # with chunks of 25 keep the 50 global writer slots busy.
    chunk_optimal=25,
    chunk_max=50,
    capped=True,
    publisher_capped=False,
    io_bound=True,
    scheduled_time_limit=2 * 3600,
    circuit="writer",
)
QC: Final = Stage(
    name="qc",
    work_state=ItemState.QC,
    entry_states=frozenset({ItemState.QC}),
    success_state=ItemState.APPROVED,
    input_stage="writing",
    terminal_success=False,
    chunk_optimal=20,
    chunk_max=100,
    capped=False,
    publisher_capped=False,
    io_bound=False,
    scheduled_time_limit=3600,
    rewrite_stage="writing",
)
DELIVERY: Final = Stage(
    name="delivery",
    work_state=ItemState.APPROVED,
    entry_states=frozenset({ItemState.APPROVED}),
    success_state=ItemState.DELIVERED,
    # The article itself is published, not QC's report on it.
    input_stage="writing",
    terminal_success=True,
    chunk_optimal=50,
    chunk_max=200,
    # The global and per-customer caps bound the writer's calls: the shared LLM
    # service is what they protect. A webhook's load lands on its publisher, so
    # delivery holds its publisher domain's slot only.
    capped=False,
    publisher_capped=True,
    io_bound=True,
    scheduled_time_limit=30 * 60,
    circuit="publisher",
)

#: Every stage, in the order an order passes them.
STAGES: Final[tuple[Stage, ...]] = (PREFLIGHT, WRITING, QC, DELIVERY)
#: Their names, in the same order (settings, CLI choices, metrics).
STAGE_NAMES: Final[tuple[str, ...]] = tuple(stage.name for stage in STAGES)

_BY_NAME: Final[dict[str, Stage]] = {stage.name: stage for stage in STAGES}
_BY_ENTRY_STATE: Final[dict[ItemState, Stage]] = {
    state: stage for stage in STAGES for state in stage.entry_states
}


class UnknownStage(KeyError):
    """Raised for a stage name the registry does not know."""


def stage_named(name: str) -> Stage:
    """The stage called ``name``.

    Raises:
        UnknownStage: no stage has that name.
    """
    try:
        return _BY_NAME[name]
    except KeyError:
        raise UnknownStage(f"unknown stage {name!r}; stages: {', '.join(STAGE_NAMES)}") from None


def stage_for_state(state: ItemState | str) -> Stage:
    """The stage that picks up an item waiting in ``state`` (an open state)."""
    return _BY_ENTRY_STATE[ItemState(state)]


def next_stage(stage: Stage) -> Stage | None:
    """The stage that takes over when ``stage`` succeeds (None after the last)."""
    return _BY_ENTRY_STATE.get(stage.success_state)


#: The open states whose stage is I/O-bound: their chunks go to a lane's I/O queue.
IO_BOUND_STATES: Final = frozenset(
    state for state, stage in _BY_ENTRY_STATE.items() if stage.io_bound
)


def queued_io_sql(prefix: str = "") -> str:
    """SQL: the item's message is out for an I/O-bound stage (published, not yet claimed).

    The predicate of ``ix_items_queued_io``: the work the feeder has sent to the
    writing and delivery slots that has not reached them yet (``ledger.pool.queued_io``).
    """
    return f"{prefix}queued_at IS NOT NULL AND {state_in_sql(IO_BOUND_STATES, prefix + 'state')}"


def pooled_kind_sql(io_bound: bool, prefix: str = "") -> str:
    """SQL: the item waits in the pool for an I/O-bound stage (or for another one).

    The predicate of the feeder's per-kind pool indexes (``ix_items_pool_io`` and
    ``ix_items_pool_cpu``): a lane's two queues fill from them separately.
    """
    states = IO_BOUND_STATES if io_bound else OPEN_ITEM_STATES - IO_BOUND_STATES
    return pooled_sql(prefix, states)
