"""Run one stage over one chunk: claim, call the pure handlers, record, report.

This is the thin shell around the core. One failing item never fails its chunk
(each item runs in its own ``try``); the ledger decides which items this run
may touch; outcomes of the whole chunk are recorded in one transaction.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog
from celery.exceptions import SoftTimeLimitExceeded
from pydantic import ValidationError
from sqlalchemy.orm import Session

from ledger.controls import halt
from ledger.db import transaction
from ledger.items import (
    ClaimedItem,
    Outcome,
    claim_items,
    defer_items,
    latest_outputs,
    record_outcomes,
    release_items,
    store_receipts,
)
from ledger.pool import unqueue
from metrics.redis_client import redis_client
from pipeline.classify import error_class_name
from pipeline.errors import BatchlineError, DataCorruption, RewriteNeeded
from pipeline.manifest import OrderDocument
from pipeline.retry_policy import Decision, decide
from pipeline.settings import get_settings
from pipeline.states import STAGE_STATE, STAGE_SUCCESS, ItemState
from tasks.handlers import INPUT_STAGE, StageContext, handler_for
from tasks.infrastructure import INFRASTRUCTURE_ERRORS
from tasks.preparers import preparer_for
from tasks.slots import SlotUser, give_back, is_capped, take_slots

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ChunkRequest:
    """One stage task's message, as typed values."""

    stage: str
    batch_id: str
    item_ids: list[int]
    priority: str
    max_retries: int
    #: the message is a retry or a redelivery: its earlier run's leases may be taken back
    reclaim: bool = False


@dataclass
class ChunkReport:
    """What happened to a chunk, after its outcomes were committed."""

    claimed: int = 0
    succeeded: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    rewrites: list[int] = field(default_factory=list)
    retry_ids: list[int] = field(default_factory=list)
    retry_delay: float = 0.0
    halted: bool = False
    failure_classes: dict[str, int] = field(default_factory=dict)
    #: claimed but handed back for want of a concurrency slot
    unslotted: int = 0
    #: this chunk held (and has now given back) concurrency slots
    released_slots: bool = False


@dataclass(frozen=True)
class _ItemResult:
    item_id: int
    outcome: Outcome | None = None
    decision: Decision | None = None  # set when the item is retried or halts the system
    error: str = ""
    rewrite: bool = False


def entry_states(stage: str) -> list[str]:
    """States an item may be in when ``stage`` claims it (a new item starts PENDING)."""
    own = STAGE_STATE[stage]
    return [ItemState.PENDING, own] if stage == "preflight" else [own]


def run_chunk(request: ChunkRequest, owner: str) -> ChunkReport:
    """Claim the chunk's items and their slots, run the stage on each, commit all at once."""
    claimed, inputs = _claim(request, owner)
    users = [_slot_user(request.stage, item) for item in claimed]
    granted = take_slots(redis_client(), users)
    try:
        slotted = _drop_unslotted(claimed, granted, owner)
        report = _run_claimed(request, owner, slotted, inputs, datetime.now(UTC))
    except INFRASTRUCTURE_ERRORS:
        _refund(claimed, owner)
        raise
    finally:
        give_back(redis_client(), [u for u, ok in zip(users, granted, strict=True) if ok])
    report.unslotted = len(claimed) - len(slotted)
    report.released_slots = any(granted) and is_capped(request.stage)
    return report


def _refund(claimed: list[ClaimedItem], owner: str) -> None:
    """An outage is never the order's fault: give its attempt back before Celery retries."""
    try:
        with transaction() as session:
            release_items(session, [i.item_id for i in claimed], owner, refund_attempt=True)
    except INFRASTRUCTURE_ERRORS:
        log.warning("chunk.refund_failed", items=len(claimed))  # the lease runs out instead


def _claim(request: ChunkRequest, owner: str) -> tuple[list[ClaimedItem], dict[int, object]]:
    with transaction() as session:
        claimed = claim_items(
            session,
            batch_id=request.batch_id,
            item_ids=request.item_ids,
            entry_states=entry_states(request.stage),
            stage_state=STAGE_STATE[request.stage],
            owner=owner,
            lease_seconds=get_settings().batch_lease_seconds,
            reclaim=request.reclaim,
        )
        # Items this message may no longer run (paused batch, halt) go back to the
        # pool, where the feeder finds them again once they may run.
        missed = set(request.item_ids) - {item.item_id for item in claimed}
        unqueue(session, sorted(missed), entry_states(request.stage))
        input_stage = INPUT_STAGE[request.stage]
        ids = [item.item_id for item in claimed]
        inputs = latest_outputs(session, ids, input_stage) if input_stage and ids else {}
    return claimed, inputs


def _slot_user(stage: str, item: ClaimedItem) -> SlotUser:
    # From the item's columns, not its document: a damaged document must still reach
    # its handler, which reports it (DataCorruption) instead of the chunk failing here.
    return SlotUser(item.item_id, stage, item.customer_id, item.publisher_domain)


def _drop_unslotted(
    claimed: list[ClaimedItem], granted: list[bool], owner: str
) -> list[ClaimedItem]:
    """Hand items that got no concurrency slot back to the pool, without spending an attempt."""
    denied = [item.item_id for item, ok in zip(claimed, granted, strict=True) if not ok]
    if denied:
        with transaction() as session:
            release_items(session, denied, owner, refund_attempt=True)
        log.info("chunk.deferred_for_slots", items=len(denied))
    return [item for item, ok in zip(claimed, granted, strict=True) if ok]


def _run_claimed(
    request: ChunkRequest,
    owner: str,
    claimed: list[ClaimedItem],
    inputs: dict[int, object],
    started: datetime,
) -> ChunkReport:
    try:
        prepared = preparer_for(request.stage)(request.batch_id, claimed) if claimed else {}
    except INFRASTRUCTURE_ERRORS:
        raise
    except Exception as error:  # e.g. a stored catalog entry that no longer validates
        # Every item ends with the reason (DATA: for an operator) instead of the chunk
        # failing as a whole and coming back through the sweeper for ever.
        failed = [_failure(request, item, error, 0.0) for item in claimed]
        return _commit(request, owner, claimed, failed, started)
    results = _run_items(request, claimed, inputs, prepared)
    return _commit(request, owner, claimed, results, started)


def _run_items(
    request: ChunkRequest,
    claimed: list[ClaimedItem],
    inputs: dict[int, object],
    prepared: dict[int, object],
) -> list[_ItemResult]:
    results: list[_ItemResult] = []
    for index, item in enumerate(claimed):
        try:
            context = StageContext(request.batch_id, item.attempts, prepared.get(item.item_id))
            results.append(_run_item(request, item, inputs.get(item.item_id), context))
        except SoftTimeLimitExceeded as error:
            # Out of time: keep what finished, hand the rest back to be retried at once
            # rather than failing the item that happened to be running.
            log.warning("chunk.soft_time_limit", stage=request.stage, left=len(claimed) - index)
            again = decide(TimeoutError(str(error)), 1, 1)
            results.extend(_ItemResult(i.item_id, decision=again) for i in claimed[index:])
            break
    return results


def _run_item(
    request: ChunkRequest, item: ClaimedItem, previous: object, context: StageContext
) -> _ItemResult:
    started = time.perf_counter()
    try:
        order = _stored_order(item)
        output = handler_for(request.stage)(order, previous, context)
    except (SoftTimeLimitExceeded, *INFRASTRUCTURE_ERRORS):
        raise  # the chunk's problem, not the order's: the whole chunk is retried
    except Exception as error:  # poison isolation: one item never sinks its chunk
        return _failure(request, item, error, _elapsed_ms(started))
    outcome = Outcome(
        item_id=item.item_id,
        new_state=STAGE_SUCCESS[request.stage],
        ok=True,
        output=output,
        attempt=item.attempts,
        duration_ms=_elapsed_ms(started),
        receipt=output.get("receipt"),
    )
    return _ItemResult(item.item_id, outcome)


def _stored_order(item: ClaimedItem) -> OrderDocument:
    try:
        return OrderDocument.model_validate(item.document)
    except ValidationError as error:
        # It was valid when submitted: the ledger row itself has been damaged.
        raise DataCorruption(f"stored order of item {item.item_id} is no longer valid") from error


def _rewrite(item: ClaimedItem, error: RewriteNeeded, ms: float) -> _ItemResult:
    log.info("item.rewrite", item_id=item.item_id, reason=str(error))
    outcome = Outcome(
        item_id=item.item_id,
        new_state=ItemState.WRITING,
        ok=False,
        output={**error.details, "rewrite": True},
        attempt=item.attempts,
        duration_ms=ms,
    )
    return _ItemResult(item.item_id, outcome, rewrite=True)


def _failure(request: ChunkRequest, item: ClaimedItem, error: Exception, ms: float) -> _ItemResult:
    if isinstance(error, RewriteNeeded):
        return _rewrite(item, error, ms)
    decision = decide(error, item.attempts, request.max_retries)
    fields = {"item_id": item.item_id, "stage": request.stage, "error": str(error)}
    if decision.action == "halt":
        log.critical("item.critical", category=decision.category, **fields)
        return _ItemResult(item.item_id, decision=decision, error=str(error))
    if decision.action == "retry":
        log.info("item.retry", strategy=decision.strategy, delay=decision.delay, **fields)
        return _ItemResult(item.item_id, decision=decision)
    log.warning("item.failed", category=decision.category, strategy=decision.strategy, **fields)
    details = error.details if isinstance(error, BatchlineError) else {}
    outcome = Outcome(
        item_id=item.item_id,
        new_state=ItemState.FAILED,
        ok=False,
        output={
            "error": str(error),
            "category": decision.category,
            "needs_manual_intervention": decision.needs_manual_intervention,
            "details": details,
        },
        attempt=item.attempts,
        duration_ms=ms,
        error_class=error_class_name(error),
        error_message=str(error)[:2000],
    )
    return _ItemResult(item.item_id, outcome)


def _commit(
    request: ChunkRequest,
    owner: str,
    claimed: list[ClaimedItem],
    results: list[_ItemResult],
    started: datetime,
) -> ChunkReport:
    outcomes = [result.outcome for result in results if result.outcome is not None]
    retries = [r for r in results if r.decision is not None and r.decision.action == "retry"]
    halts = [r for r in results if r.decision is not None and r.decision.action == "halt"]
    report = ChunkReport(claimed=len(claimed), halted=bool(halts))
    with transaction() as session:
        moved = record_outcomes(
            session,
            stage=request.stage,
            stage_state=STAGE_STATE[request.stage],
            owner=owner,
            outcomes=outcomes,
            span=(started, datetime.now(UTC)),
        )
        store_receipts(session, request.batch_id, [o for o in outcomes if o.item_id in moved])
        _defer(session, owner, retries, report)
        _halt(session, request, owner, halts)
    report.succeeded = [o.item_id for o in outcomes if o.ok and o.item_id in moved]
    rewrites = {r.item_id for r in results if r.rewrite}
    report.rewrites = [i for i in rewrites if i in moved]
    report.failed = [
        o.item_id for o in outcomes if not o.ok and o.item_id in moved and o.item_id not in rewrites
    ]
    failed = set(report.failed)
    report.failure_classes = dict(
        Counter(str(o.error_class) for o in outcomes if o.item_id in failed)
    )
    return report


def _defer(session: Session, owner: str, retries: list[_ItemResult], report: ChunkReport) -> None:
    if not retries:
        return
    report.retry_ids = [r.item_id for r in retries]
    report.retry_delay = max(r.decision.delay for r in retries if r.decision)
    refund = all(r.decision is not None and not r.decision.spends_budget for r in retries)
    defer_items(
        session,
        report.retry_ids,
        owner=owner,
        hold_seconds=report.retry_delay + get_settings().batch_lease_seconds,
        refund_attempt=refund,
    )


def _halt(session: Session, request: ChunkRequest, owner: str, halts: list[_ItemResult]) -> None:
    if not halts:
        return
    first = halts[0]
    halt(
        session,
        reason=f"CRITICAL in {request.stage} of item {first.item_id}: {first.error}",
        data={"batch_id": request.batch_id, "item_id": first.item_id, "stage": request.stage},
    )
    # The item goes back untouched: after inspection, resume-all runs it again.
    release_items(session, [r.item_id for r in halts], owner)


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
