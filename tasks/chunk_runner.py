"""Run one stage over one chunk: claim, call the pure handlers, record, report.

This is the thin shell around the core. One failing item never fails its chunk
(each item runs in its own ``try``); the ledger decides which items this run
may touch; outcomes of the whole chunk are recorded in one transaction. What
each item's result or error becomes (``Done | Failed | Rewrite | Retry | Halt``)
is decided by ``pipeline.outcomes``.
"""

from __future__ import annotations

import time
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
from pipeline.chunk import ChunkMessage
from pipeline.errors import DataCorruption
from pipeline.manifest import OrderDocument
from pipeline.outcomes import (
    ChunkSummary,
    Done,
    Failed,
    Halt,
    ItemOutcome,
    Retry,
    Rewrite,
    not_prepared,
    out_of_time,
    outcome_of_error,
    summarise,
)
from pipeline.settings import get_settings
from pipeline.stage_registry import Stage, stage_named
from pipeline.states import ItemState
from tasks.handlers import StageContext
from tasks.infrastructure import INFRASTRUCTURE_ERRORS
from tasks.slots import SlotUser, give_back, is_capped, take_slots
from tasks.stage_runtime import StageRuntime, runtime_for

log = structlog.get_logger(__name__)


@dataclass
class ChunkReport:
    """What happened to a chunk, after its outcomes were committed."""

    claimed: int = 0
    summary: ChunkSummary = field(default_factory=ChunkSummary)
    #: claimed but handed back for want of a concurrency slot
    unslotted: int = 0
    #: this chunk held (and has now given back) concurrency slots
    released_slots: bool = False

    @property
    def succeeded(self) -> list[int]:
        """Items the stage moved on."""
        return list(self.summary.succeeded)

    @property
    def failed(self) -> list[int]:
        """Items that failed for good."""
        return list(self.summary.failed)

    @property
    def rewrites(self) -> list[int]:
        """Items QC sent back to the writer."""
        return list(self.summary.rewrites)

    @property
    def retry_ids(self) -> list[int]:
        """Items the chunk's retry message runs again."""
        return self.summary.retry_ids

    @property
    def retry_delay(self) -> float:
        """Seconds until the retry message runs."""
        return self.summary.retry_delay

    @property
    def halted(self) -> bool:
        """A CRITICAL error halted all processing."""
        return bool(self.summary.halts)

    @property
    def failure_classes(self) -> dict[str, int]:
        """Error class -> how many of the chunk's orders failed with it."""
        return self.summary.failure_classes


def run_chunk(message: ChunkMessage, owner: str, *, reclaim: bool = False) -> ChunkReport:
    """Claim the chunk's items and their slots, run the stage on each, commit all at once.

    ``reclaim``: the message is a retry or a redelivery, so leases its earlier run
    holds under the same task id may be taken back. An outage of the ledger or
    Redis anywhere here gives the claimed items their attempt back before it is
    raised for Celery to retry the chunk.
    """
    runtime = runtime_for(message.stage)
    claimed, inputs = _claim(runtime.stage, message, owner, reclaim)
    users = [_slot_user(runtime.stage, item) for item in claimed]
    granted: list[bool] = []
    try:
        granted = take_slots(redis_client(), users)
        slotted = _drop_unslotted(claimed, granted, owner)
        report = _run_claimed(runtime, message, owner, slotted, inputs)
    except INFRASTRUCTURE_ERRORS:
        _refund(claimed, owner)
        raise
    finally:
        if any(granted):
            give_back(redis_client(), [u for u, ok in zip(users, granted, strict=True) if ok])
    report.unslotted = len(claimed) - len(slotted)
    report.released_slots = any(granted) and is_capped(runtime.stage.name)
    return report


def _refund(claimed: list[ClaimedItem], owner: str) -> None:
    """An outage is never the order's fault: give its attempt back before Celery retries."""
    try:
        with transaction() as session:
            release_items(session, [i.item_id for i in claimed], owner, refund_attempt=True)
    except INFRASTRUCTURE_ERRORS:
        log.warning("chunk.refund_failed", items=len(claimed))  # the lease runs out instead


def _claim(
    stage: Stage, message: ChunkMessage, owner: str, reclaim: bool
) -> tuple[list[ClaimedItem], dict[int, object]]:
    entry_states = sorted(stage.entry_states)
    with transaction() as session:
        claimed = claim_items(
            session,
            batch_id=message.batch_id,
            item_ids=message.item_ids,
            entry_states=entry_states,
            stage_state=stage.work_state,
            owner=owner,
            lease_seconds=get_settings().batch_lease_seconds,
            reclaim=reclaim,
        )
        # Items this message may no longer run (paused batch, halt) go back to the
        # pool, where the feeder finds them again once they may run.
        missed = set(message.item_ids) - {item.item_id for item in claimed}
        unqueue(session, sorted(missed), entry_states)
        ids = [item.item_id for item in claimed]
        inputs = (
            latest_outputs(session, ids, stage.input_stage) if stage.input_stage and ids else {}
        )
    return claimed, inputs


def _slot_user(stage: Stage, item: ClaimedItem) -> SlotUser:
    # From the item's columns, not its document: a damaged document must still reach
    # its handler, which reports it (DataCorruption) instead of the chunk failing here.
    return SlotUser(item.item_id, stage.name, item.customer_id, item.publisher_domain)


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
    runtime: StageRuntime,
    message: ChunkMessage,
    owner: str,
    claimed: list[ClaimedItem],
    inputs: dict[int, object],
) -> ChunkReport:
    started = datetime.now(UTC)
    outcomes = _outcomes(runtime, message, claimed, inputs) if claimed else []
    return _commit(runtime.stage, message, owner, claimed, outcomes, started)


def _outcomes(
    runtime: StageRuntime,
    message: ChunkMessage,
    claimed: list[ClaimedItem],
    inputs: dict[int, object],
) -> list[ItemOutcome]:
    ids = [item.item_id for item in claimed]
    try:
        prepared = runtime.prepare(message.batch_id, claimed)
    except SoftTimeLimitExceeded:
        # Out of time before any order ran (a stalled worker, a slow query): no
        # order's fault, so none fails and none pays an attempt.
        log.warning("chunk.soft_time_limit", stage=message.stage, left=len(ids), preparing=True)
        return not_prepared(ids, "the chunk reached its soft time limit while preparing")
    except INFRASTRUCTURE_ERRORS:
        raise
    except Exception as error:  # e.g. a stored catalog entry that no longer validates
        # Every item ends with the reason (DATA: for an operator) instead of the chunk
        # failing as a whole and coming back through the sweeper for ever.
        return [_of_error(message, item, error, 0.0) for item in claimed]
    return _run_items(runtime, message, claimed, inputs, prepared)


def _run_items(
    runtime: StageRuntime,
    message: ChunkMessage,
    claimed: list[ClaimedItem],
    inputs: dict[int, object],
    prepared: dict[int, object],
) -> list[ItemOutcome]:
    outcomes: list[ItemOutcome] = []
    for index, item in enumerate(claimed):
        try:
            context = StageContext(message.batch_id, item.attempts, prepared.get(item.item_id))
            outcomes.append(_run_item(runtime, message, item, inputs.get(item.item_id), context))
        except SoftTimeLimitExceeded:
            # Out of time: keep what finished; the rest is retried at once.
            waiting = [i.item_id for i in claimed[index + 1 :]]
            log.warning("chunk.soft_time_limit", stage=message.stage, left=len(waiting) + 1)
            outcomes.extend(
                out_of_time(
                    item.item_id, waiting, attempt=item.attempts, max_retries=message.max_retries
                )
            )
            break
    return outcomes


def _run_item(
    runtime: StageRuntime,
    message: ChunkMessage,
    item: ClaimedItem,
    previous: object,
    context: StageContext,
) -> ItemOutcome:
    started = time.perf_counter()
    try:
        order = _stored_order(item)
        output = runtime.handle(order, previous, context)
    except (SoftTimeLimitExceeded, *INFRASTRUCTURE_ERRORS):
        raise  # the chunk's problem, not the order's: the whole chunk is retried
    except Exception as error:  # poison isolation: one item never sinks its chunk
        return _of_error(message, item, error, _elapsed_ms(started))
    return Done(item.item_id, output, _elapsed_ms(started))


def _stored_order(item: ClaimedItem) -> OrderDocument:
    try:
        return OrderDocument.model_validate(item.document)
    except ValidationError as error:
        # It was valid when submitted: the ledger row itself has been damaged.
        raise DataCorruption(f"stored order of item {item.item_id} is no longer valid") from error


def _of_error(message: ChunkMessage, item: ClaimedItem, error: Exception, ms: float) -> ItemOutcome:
    outcome = outcome_of_error(item.item_id, error, item.attempts, message.max_retries, ms)
    _log_outcome(message.stage, outcome)
    return outcome


def _log_outcome(stage: str, outcome: ItemOutcome) -> None:
    fields = {"item_id": outcome.item_id, "stage": stage}
    match outcome:
        case Halt(reason=reason):
            log.critical("item.critical", error=reason, **fields)
        case Retry(reason=reason, strategy=strategy, delay=delay):
            log.info("item.retry", strategy=strategy, delay=delay, error=reason, **fields)
        case Rewrite(reason=reason):
            log.info("item.rewrite", reason=reason, **fields)
        case Failed(reason=reason, category=category, strategy=strategy):
            log.warning("item.failed", category=category, strategy=strategy, error=reason, **fields)


def _ledger_row(stage: Stage, outcome: ItemOutcome, attempt: int) -> Outcome | None:
    """The state change and stored output an outcome records (None: nothing recorded)."""
    match outcome:
        case Done():
            return Outcome(
                outcome.item_id,
                stage.success_state,
                True,
                outcome.output,
                attempt,
                outcome.duration_ms,
                receipt=outcome.receipt,
            )
        case Failed():
            return Outcome(
                outcome.item_id,
                ItemState.FAILED,
                False,
                outcome.output(),
                attempt,
                outcome.duration_ms,
                error_class=outcome.error_class,
                error_message=outcome.reason[:2000],
            )
        case Rewrite():
            back_to = stage_named(stage.rewrite_stage or stage.name).work_state
            return Outcome(
                outcome.item_id, back_to, False, outcome.output(), attempt, outcome.duration_ms
            )
    return None


def _commit(
    stage: Stage,
    message: ChunkMessage,
    owner: str,
    claimed: list[ClaimedItem],
    outcomes: list[ItemOutcome],
    started: datetime,
) -> ChunkReport:
    attempts = {item.item_id: item.attempts for item in claimed}
    rows = [_ledger_row(stage, o, attempts[o.item_id]) for o in outcomes]
    recorded = [row for row in rows if row is not None]
    with transaction() as session:
        moved = record_outcomes(
            session,
            stage=stage.name,
            stage_state=stage.work_state,
            owner=owner,
            outcomes=recorded,
            span=(started, datetime.now(UTC)),
        )
        store_receipts(session, message.batch_id, [r for r in recorded if r.item_id in moved])
        summary = summarise(outcomes, moved)
        _defer(session, owner, summary)
        _halt(session, stage, message, owner, summary.halts)
    return ChunkReport(claimed=len(claimed), summary=summary)


def _defer(session: Session, owner: str, summary: ChunkSummary) -> None:
    """Hold retried items for the chunk's retry message; only those that paid keep the attempt."""
    hold = summary.retry_delay + get_settings().batch_lease_seconds
    for ids, refund in ((summary.refunded_retries, True), (summary.spent_retries, False)):
        defer_items(session, ids, owner=owner, hold_seconds=hold, refund_attempt=refund)


def _halt(
    session: Session, stage: Stage, message: ChunkMessage, owner: str, halts: tuple[Halt, ...]
) -> None:
    if not halts:
        return
    first = halts[0]
    halt(
        session,
        reason=f"CRITICAL in {stage.name} of item {first.item_id}: {first.reason}",
        data={"batch_id": message.batch_id, "item_id": first.item_id, "stage": stage.name},
    )
    # The item goes back untouched: after inspection, resume-all runs it again.
    release_items(session, [h.item_id for h in halts], owner)


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
