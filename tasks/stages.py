"""The four stage tasks and ``start_batch``: load, call the core, persist, emit. Nothing else."""

from __future__ import annotations

import os
import socket
import threading
from datetime import UTC, datetime
from typing import Any

import redis
import structlog
from celery import Task

from celery_app import app
from ledger.batches import find_batch, pending_orders
from ledger.catalog import customer_tiers
from ledger.db import transaction
from metrics.progress import ChunkProgress, record_chunk
from metrics.redis_client import redis_client
from pipeline.manifest import OrderDocument
from pipeline.priority import rank_by_priority
from pipeline.stages_catalog import STAGES
from pipeline.states import NEXT_STAGE
from tasks.chunk_runner import ChunkReport, ChunkRequest, run_chunk
from tasks.dispatch import send_chunks
from tasks.finalize import finalize_if_complete
from tasks.infrastructure import INFRASTRUCTURE_ERRORS

log = structlog.get_logger(__name__)


def lease_owner(task: Task) -> str:
    """Who holds a lease: ``<task id>@<host>/<pid>/<thread>``.

    The ledger lets a run take back leases held under its own task id: Celery's
    retries keep the id, and so does a message redelivered after its worker died,
    so neither waits for the old lease to expire.
    """
    where = f"{socket.gethostname()}/{os.getpid()}/{threading.get_ident()}"
    return f"{task.request.id}@{where}"


def _is_second_run(task: Task) -> bool:
    """Whether this message ran before: a Celery retry, or redelivered by the broker.

    kombu marks a message it puts back (a lost worker's reject, an unacked restore)
    as ``redelivered``; a plain copy of a message carries no such mark.
    """
    delivery = task.request.delivery_info or {}
    return bool(task.request.retries) or bool(delivery.get("redelivered"))


def _emit_progress(request: ChunkRequest, report: ChunkReport) -> None:
    delivered = len(report.succeeded) if request.stage == "delivery" else 0
    change = ChunkProgress(
        request.stage,
        len(report.succeeded),
        len(report.failed),
        delivered,
        errors=report.failure_classes,
        rewrites=len(report.rewrites),
    )
    try:
        record_chunk(redis_client(), request.batch_id, change)
    except redis.RedisError as error:  # progress is rebuildable from the ledger
        log.warning("progress.unavailable", batch_id=request.batch_id, error=str(error))


def _hand_on(request: ChunkRequest, report: ChunkReport) -> None:
    next_stage = NEXT_STAGE[request.stage]
    # Successes go on to the next stage; QC's rewrites go back to writing.
    onward = [(next_stage, report.succeeded), ("writing", report.rewrites)]
    for stage, item_ids in onward:
        if stage and item_ids:
            send_chunks(
                stage,
                request.batch_id,
                item_ids,
                priority=request.priority,
                max_retries=request.max_retries,
            )
    terminal = report.failed or (request.stage == "delivery" and report.succeeded)
    if terminal:
        finalize_if_complete(request.batch_id)


def execute_stage(task: Task, stage: str, **message: Any) -> dict[str, Any]:
    """Run one chunk of ``stage`` and pass its successes on; retry what may succeed later."""
    request = ChunkRequest(
        stage=stage,
        batch_id=message["batch_id"],
        item_ids=[int(i) for i in message["item_ids"]],
        priority=message.get("priority", "normal"),
        max_retries=int(message.get("max_retries", 3)),
        reclaim=_is_second_run(task),
    )
    report = run_chunk(request, lease_owner(task))
    _emit_progress(request, report)
    _hand_on(request, report)
    if report.retry_ids:
        retry_message = {**message, "item_ids": report.retry_ids}
        # The per-item budget lives in the ledger (attempts), not in Celery's counter.
        raise task.retry(kwargs=retry_message, countdown=report.retry_delay, max_retries=10_000)
    return {"claimed": report.claimed, "ok": len(report.succeeded), "failed": len(report.failed)}


def _register(stage: str) -> Task:
    @app.task(
        name=f"batchline.stage.{stage}",
        bind=True,
        autoretry_for=INFRASTRUCTURE_ERRORS,
        retry_backoff=True,
        retry_backoff_max=60,
        max_retries=20,
    )
    def stage_task(self: Task, **message: Any) -> dict[str, Any]:
        return execute_stage(self, stage, **message)

    stage_task.__doc__ = f"Run the {stage} stage over a chunk of item ids."
    return stage_task


STAGE_TASKS = {stage: _register(stage) for stage in STAGES}


@app.task(
    name="batchline.start_batch",
    autoretry_for=INFRASTRUCTURE_ERRORS,
    retry_backoff=True,
    max_retries=20,
)
def start_batch(batch_id: str, priority: str = "normal") -> dict[str, Any]:
    """Publish the preflight chunks of every PENDING item, highest priority first."""
    with transaction() as session:
        batch = find_batch(session, batch_id)
        rows = pending_orders(session, batch_id)
        tiers = customer_tiers(session, sorted({str(doc["customer_id"]) for _, doc, _ in rows}))
    orders = [(i, OrderDocument.model_validate(doc), at) for i, doc, at in rows]
    pending = rank_by_priority(orders, tiers, datetime.now(UTC))
    if batch is None:
        log.warning("batch.unknown", batch_id=batch_id)
        return {"chunks": 0}
    chunks = send_chunks(
        "preflight",
        batch_id,
        pending,
        priority=batch.priority,
        max_retries=int(batch.options.get("max_retries", 3)),
    )
    log.info("batch.started", batch_id=batch_id, items=len(pending), chunks=chunks)
    return {"chunks": chunks}
