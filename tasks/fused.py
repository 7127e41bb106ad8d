"""Run the next stage inside a chunk, on the items it moved on (``pipeline.fusing``).

A writing chunk, once its calls are back, loads QC's data for the articles it
wrote (``prepare_qc``, one query for them all) and judges each with QC's own
handler, while the chunk has time left before its soft limit. Each decision is
recorded by the chunk's one statement as the item's only state change, with
both outputs (``ledger.items.FusedOutput``). What is not judged in time, or
whose judgement could not be made here (a retry, a halt), is recorded as the
writer's success: it waits in the pool for QC chunks, as without fusing.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import structlog
from celery.exceptions import SoftTimeLimitExceeded

from ledger.items import ClaimedItem, FusedOutput, Outcome
from pipeline.chunk import ChunkMessage
from pipeline.fusing import FuseRules, fused_stage, fused_time_left
from pipeline.manifest import OrderDocument
from pipeline.outcomes import Done, Failed, ItemOutcome, Rewrite, outcome_of_error, with_span
from pipeline.settings import get_settings
from pipeline.stage_registry import Stage, stage_named
from pipeline.states import ItemState
from tasks.handlers import StageContext
from tasks.infrastructure import INFRASTRUCTURE_ERRORS
from tasks.stage_runtime import StageRuntime, runtime_for

log = structlog.get_logger(__name__)

#: What the fused stage decided for an item (a retry or halt is left to its own chunks).
Decision = Done | Failed | Rewrite


def stage_to_fuse(stage: Stage, lane: str) -> Stage | None:
    """The stage a chunk of ``stage`` in ``lane`` runs itself afterwards (None: none)."""
    settings = get_settings()
    plan = settings.schedules()
    rules = FuseRules(
        enabled=settings.batch_fuse_stages,
        capped=settings.capped_stages(),
        scheduled=frozenset(s.stage for s in plan.scheduled if plan.gates(s.stage, lane)),
        # Celery's threads pool runs tasks outside the main thread; prefork and solo in it.
        threaded=not settings.batch_fuse_in_threads
        and threading.current_thread() is not threading.main_thread(),
    )
    return fused_stage(stage, rules)


def run_fused(
    following: Stage,
    message: ChunkMessage,
    claimed: Sequence[ClaimedItem],
    outcomes: Sequence[ItemOutcome],
    began: float,
) -> dict[int, Decision]:
    """Run ``following`` on the chunk's successes while time is left; item id -> decision.

    ``began``: the chunk's start on the monotonic clock (its soft limit counts from there).
    """
    done = {o.item_id: o for o in outcomes if isinstance(o, Done)}
    soft = float(get_settings().stage_time_limits(message.stage)[0])
    if not done or fused_time_left(time.monotonic() - began, soft) <= 0:
        return {}
    items = [item for item in claimed if item.item_id in done]
    runtime = runtime_for(following.name)
    try:
        prepared = runtime.prepare(message.batch_id, items)
    except Exception as error:  # out of time, an outage, bad stored data: not fused
        # QC's own chunks prepare it again and report what is wrong; the writer's
        # work is recorded now either way.
        log.warning("chunk.fuse_skipped", stage=following.name, error=str(error))
        return {}
    decisions: dict[int, Decision] = {}
    try:
        for item in items:
            if fused_time_left(time.monotonic() - began, soft) <= 0:
                break  # the rest waits for QC's own chunks
            decision = _judge(runtime, message, item, done[item.item_id].output, prepared)
            if isinstance(decision, Done | Failed | Rewrite):
                decisions[item.item_id] = decision
    except (SoftTimeLimitExceeded, *INFRASTRUCTURE_ERRORS) as error:
        log.warning("chunk.fuse_cut_short", stage=following.name, error=str(error))
    if len(decisions) < len(items):
        log.info("chunk.fuse_left", stage=following.name, left=len(items) - len(decisions))
    return decisions


def _judge(
    runtime: StageRuntime,
    message: ChunkMessage,
    item: ClaimedItem,
    written: dict[str, object],
    prepared: dict[int, object],
) -> ItemOutcome:
    began, started = datetime.now(UTC), time.perf_counter()
    # As QC's own chunk would read it: the stored JSON, not the writer's objects.
    previous = json.loads(json.dumps(written))
    # The first run of the next stage for this item (its counter restarts at a stage change).
    context = StageContext(message.batch_id, 1, prepared.get(item.item_id))
    try:
        order = OrderDocument.model_validate(item.document)
        output = runtime.handle(order, previous, context)
    except (SoftTimeLimitExceeded, *INFRASTRUCTURE_ERRORS):
        raise
    except Exception as error:  # one item's rejection never stops the others
        outcome = outcome_of_error(item.item_id, error, 1, message.max_retries, _ms(started))
        return with_span(outcome, (began, datetime.now(UTC)))
    return Done(item.item_id, output, _ms(started), (began, datetime.now(UTC)))


def fused_row(row: Outcome, following: Stage, decision: Decision) -> Outcome:
    """``row`` (the chunk's own success) carrying ``following``'s decision and output."""
    match decision:
        case Done():
            state, output, ok = following.success_state, decision.output, True
        case Failed():
            state, output, ok = ItemState.FAILED, decision.output(), False
        case Rewrite():
            back_to = stage_named(following.rewrite_stage or following.name)
            state, output, ok = back_to.work_state, decision.output(), False
    failure = decision if isinstance(decision, Failed) else None
    return Outcome(
        row.item_id,
        state,
        row.ok,
        row.output,
        row.attempt,
        row.duration_ms,
        error_class=failure.error_class if failure else None,
        error_message=failure.reason[:2000] if failure else None,
        span=row.span,
        fused=FusedOutput(following.name, ok, output, decision.duration_ms, decision.span),
    )


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
