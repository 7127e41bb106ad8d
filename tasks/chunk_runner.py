"""Run one stage over one chunk: claim, call the pure handlers, record, report.

This is the thin shell around the core. One failing item never fails its chunk
(each item runs in its own ``try``); the ledger decides which items this run
may touch; outcomes of the whole chunk are recorded in one transaction.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import structlog
from celery.exceptions import SoftTimeLimitExceeded

from ledger.db import transaction
from ledger.items import (
    ClaimedItem,
    Outcome,
    claim_items,
    latest_outputs,
    record_outcomes,
    release_items,
    store_receipts,
)
from pipeline.classify import RETRYABLE, categorize, error_class_name, retry_delay
from pipeline.errors import BatchlineError, ErrorCategory
from pipeline.manifest import OrderDocument
from pipeline.settings import get_settings
from pipeline.states import STAGE_STATE, STAGE_SUCCESS, ItemState
from tasks.handlers import HANDLERS, INPUT_STAGE, StageContext

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ChunkRequest:
    """One stage task's message, as typed values."""

    stage: str
    batch_id: str
    item_ids: list[int]
    priority: str
    max_retries: int


@dataclass
class ChunkReport:
    """What happened to a chunk, after its outcomes were committed."""

    claimed: int = 0
    succeeded: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    retry_ids: list[int] = field(default_factory=list)
    retry_delay: float = 0.0


@dataclass(frozen=True)
class _ItemResult:
    item_id: int
    outcome: Outcome | None
    retry_after: float | None = None


def entry_states(stage: str) -> list[str]:
    """States an item may be in when ``stage`` claims it (a new item starts PENDING)."""
    own = STAGE_STATE[stage]
    return [ItemState.PENDING, own] if stage == "preflight" else [own]


def run_chunk(request: ChunkRequest, owner: str) -> ChunkReport:
    """Claim the chunk's items, run the stage on each, and commit all outcomes at once."""
    settings = get_settings()
    with transaction() as session:
        claimed = claim_items(
            session,
            batch_id=request.batch_id,
            item_ids=request.item_ids,
            entry_states=entry_states(request.stage),
            stage_state=STAGE_STATE[request.stage],
            owner=owner,
            lease_seconds=settings.batch_lease_seconds,
        )
        input_stage = INPUT_STAGE[request.stage]
        inputs = latest_outputs(session, request.item_ids, input_stage) if input_stage else {}
    return _commit(request, owner, claimed, _run_items(request, claimed, inputs))


def _run_items(
    request: ChunkRequest, claimed: list[ClaimedItem], inputs: dict[int, object]
) -> list[_ItemResult]:
    results: list[_ItemResult] = []
    for index, item in enumerate(claimed):
        try:
            results.append(_run_item(request, item, inputs.get(item.item_id)))
        except SoftTimeLimitExceeded:
            # Out of time: keep what finished, hand the rest back to be retried at once
            # rather than failing the item that happened to be running.
            log.warning("chunk.soft_time_limit", stage=request.stage, left=len(claimed) - index)
            results.extend(_ItemResult(i.item_id, None, retry_after=0.0) for i in claimed[index:])
            break
    return results


def _run_item(request: ChunkRequest, item: ClaimedItem, previous: object) -> _ItemResult:
    started = time.perf_counter()
    context = StageContext(batch_id=request.batch_id, attempt=item.attempts)
    try:
        order = OrderDocument.model_validate(item.document)
        output = HANDLERS[request.stage](order, previous, context)
    except SoftTimeLimitExceeded:
        raise
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


def _failure(request: ChunkRequest, item: ClaimedItem, error: Exception, ms: float) -> _ItemResult:
    category = categorize(error)
    if category in RETRYABLE and item.attempts <= request.max_retries:
        delay = retry_delay(error, item.attempts)
        log.info("item.retry", item_id=item.item_id, stage=request.stage, error=str(error))
        return _ItemResult(item.item_id, None, retry_after=delay)
    if category is ErrorCategory.CRITICAL:
        log.critical("item.critical", item_id=item.item_id, stage=request.stage, error=str(error))
    details = error.details if isinstance(error, BatchlineError) else {}
    outcome = Outcome(
        item_id=item.item_id,
        new_state=ItemState.FAILED,
        ok=False,
        output={"error": str(error), "category": category, "details": details},
        attempt=item.attempts,
        duration_ms=ms,
        error_class=error_class_name(error),
        error_message=str(error)[:2000],
    )
    return _ItemResult(item.item_id, outcome)


def _commit(
    request: ChunkRequest, owner: str, claimed: list[ClaimedItem], results: list[_ItemResult]
) -> ChunkReport:
    outcomes = [result.outcome for result in results if result.outcome is not None]
    retries = [result for result in results if result.outcome is None]
    with transaction() as session:
        moved = record_outcomes(
            session,
            stage=request.stage,
            stage_state=STAGE_STATE[request.stage],
            owner=owner,
            outcomes=outcomes,
        )
        store_receipts(session, request.batch_id, [o for o in outcomes if o.item_id in moved])
        release_items(session, [result.item_id for result in retries], owner)
    return ChunkReport(
        claimed=len(claimed),
        succeeded=[o.item_id for o in outcomes if o.ok and o.item_id in moved],
        failed=[o.item_id for o in outcomes if not o.ok and o.item_id in moved],
        retry_ids=[result.item_id for result in retries],
        retry_delay=max((result.retry_after or 0.0 for result in retries), default=0.0),
    )


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
