"""``get_batch_status``: the ledger's status with Redis's live counters (rebuilt if lost)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from celery_app import app
from ledger.batches import failed_by_stage, state_counts
from ledger.db import transaction
from ledger.lineage import lineage_links
from ledger.models import Batch
from ledger.overview import HaltState, current_halt, deferred_orders
from ledger.pool import circuit_waits
from metrics.progress import FINAL_FIELD, is_complete, read_progress, rebuild_progress
from metrics.redis_client import redis_client
from pipeline.errors import UnknownBatch
from pipeline.stage_registry import STAGE_NAMES
from pipeline.states import FINAL_BATCH_STATUSES
from pipeline.status import Counters, items_at_stage, summarize
from tasks.windows import with_schedule


def _rebuild(batch: Batch) -> dict[str, str]:
    with transaction() as session:
        counts = state_counts(session, batch.id)
        failures = failed_by_stage(session, batch.id)
    return rebuild_progress(
        redis_client(),
        batch.id,
        total=batch.total_items,
        state_counts=counts,
        status=batch.status,
        started_at=batch.created_at.timestamp(),
        failed_by_stage=failures,
        finished_at=batch.finalized_at.timestamp() if batch.finalized_at else None,
    )


def _load_progress(batch: Batch) -> dict[str, str]:
    progress = read_progress(redis_client(), batch.id)
    if batch.finalized_at is not None and FINAL_FIELD not in progress:
        # A finished batch's counts are the ledger's: read them once, then keep them.
        return _rebuild(batch)
    # Redis lost the hash (restart, TTL) or holds only part of it: the ledger knows.
    return progress if is_complete(progress) else _rebuild(batch)


def refresh_progress(batch_id: str) -> None:
    """Rewrite the batch's progress hash from the ledger (after a cancel or a lost hash).

    A finalized batch's hash is marked final: its counts stay the ledger's.
    """
    with transaction() as session:
        batch = session.get(Batch, batch_id)
    if batch is not None:
        _rebuild(batch)


def batch_status(batch_id: str) -> dict[str, Any]:
    """Return the status of ``batch_id`` as a plain dict (fields: docs/api.md).

    Raises:
        UnknownBatch: no such batch.
    """
    with transaction() as session:
        batch = session.scalar(select(Batch).where(Batch.id == batch_id))
    if batch is None:
        raise UnknownBatch(f"no batch with id {batch_id!r}")
    progress = _load_progress(batch)
    finished = batch.status in FINAL_BATCH_STATUSES

    def number(name: str) -> int:
        return int(float(progress.get(name) or 0))

    counters = Counters(
        total=batch.total_items,
        completed=number("completed"),
        failed=number("failed"),
        cancelled=number("cancelled"),
        started_at=float(progress.get("started_at", batch.created_at.timestamp())),
        # Measured up to now while the batch runs: a stalled batch's velocity falls
        # and its ETA grows, instead of keeping the figures of its last chunk.
        updated_at=float(progress.get("finished_at") or progress.get("updated_at") or 0.0)
        if finished
        else time.time(),
    )
    at_stage, deferred, halt = _ledger_now(batch.id)
    status = {
        "batch_id": batch.id,
        "status": batch.status.lower(),
        "priority": batch.priority,
        "total": batch.total_items,
        "completed": counters.completed,
        "failed": counters.failed,
        "cancelled": counters.cancelled,
        **summarize(counters, finished=finished),
        "stages": {
            stage: {"done": number(f"{stage}_done"), "failed": number(f"{stage}_failed")}
            for stage in STAGE_NAMES
        },
        # Apart from "stages", whose shape callers compare whole: where orders are now.
        "in_stage": {stage: 0 if finished else at_stage[stage] for stage in STAGE_NAMES},
        "created_at": batch.created_at.isoformat(),
        "started_at": datetime.fromtimestamp(counters.started_at, UTC).isoformat(),
        "finalized_at": batch.finalized_at.isoformat() if batch.finalized_at else None,
        **_lineage(batch.id),
        "waiting_on": [] if finished else _waiting_on(batch.id),
        "deferred": {"orders": 0, "until": None} if finished else deferred,
        # A halt stops every batch: whoever asks about one must hear of it.
        "halted": halt is not None,
        "halt_reason": halt.reason if halt else None,
    }
    # Orders waiting for scheduled stages' windows, and the ETA counting that wait.
    return with_schedule(status, finished=finished)


def _ledger_now(batch_id: str) -> tuple[dict[str, int], dict[str, Any], HaltState | None]:
    """Items per stage (waiting for it or in it), deferred items and the halt, from the ledger."""
    with transaction() as session:
        return (
            items_at_stage(state_counts(session, batch_id)),
            deferred_orders(session, batch_id),
            current_halt(session),
        )


def _waiting_on(batch_id: str) -> list[dict[str, object]]:
    """Open circuits the batch's orders wait for (why it may not be moving)."""
    with transaction() as session:
        return circuit_waits(session, batch_id)


def _lineage(batch_id: str) -> dict[str, Any]:
    """The recovery links of the batch (origin, root, round, recovered_by)."""
    with transaction() as session:
        return lineage_links(session, batch_id)


@app.task(name="batchline.get_batch_status", ignore_result=False)
def get_batch_status(batch_id: str) -> dict[str, Any]:
    """Celery task form of :func:`batch_status` (``get_batch_status.delay(id).get()``)."""
    return batch_status(batch_id)
