"""Each stage record paired with what runs it: its preparer and its handler.

The registry (``pipeline.stage_registry``) says what a stage is; this module
says which code does its work, in one place. With ``BATCH_STAGE_HANDLERS=noop``
every stage prepares nothing and its handler does nothing but return, so only
batchline's own bookkeeping runs (what the benchmark's scenario C measures).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from ledger.items import ClaimedItem
from pipeline.manifest import OrderDocument
from pipeline.settings import get_settings
from pipeline.stage_registry import DELIVERY, PREFLIGHT, QC, WRITING, Stage, stage_named
from tasks.handlers import (
    Handler,
    StageContext,
    handle_delivery,
    handle_preflight,
    handle_qc,
    handle_writing,
)
from tasks.preparers import (
    Preparer,
    prepare_delivery,
    prepare_preflight,
    prepare_qc,
    prepare_writing,
)


@dataclass(frozen=True)
class StageRuntime:
    """A stage and the code that runs it: ``prepare`` once per chunk, ``handle`` per item."""

    stage: Stage
    prepare: Preparer
    handle: Handler


RUNTIMES: Final[tuple[StageRuntime, ...]] = (
    StageRuntime(PREFLIGHT, prepare_preflight, handle_preflight),
    StageRuntime(WRITING, prepare_writing, handle_writing),
    StageRuntime(QC, prepare_qc, handle_qc),
    StageRuntime(DELIVERY, prepare_delivery, handle_delivery),
)


def prepare_nothing(batch_id: str, items: Sequence[ClaimedItem]) -> dict[int, Any]:
    """The no-op preparer: loads nothing."""
    return {}


def handle_nothing(order: OrderDocument, previous: Any, context: StageContext) -> dict[str, Any]:
    """The no-op handler: only the stage's bookkeeping runs around it."""
    return {"noop": True}


def runtime_for(stage: str) -> StageRuntime:
    """What runs ``stage`` under ``BATCH_STAGE_HANDLERS`` (``real`` or ``noop``).

    Raises:
        UnknownStage: no stage has that name.
    """
    record = stage_named(stage)
    runtime = next(r for r in RUNTIMES if r.stage is record)
    if get_settings().batch_stage_handlers == "noop":
        # Nothing is called outside: no calls to run concurrently, no circuit to guard.
        quiet = replace(record, io_bound=False, circuit=None)
        return StageRuntime(quiet, prepare_nothing, handle_nothing)
    return runtime
