"""The four stage tasks and ``start_batch``: load, call the core, persist, emit. Nothing else."""

from __future__ import annotations

import os
import socket
import threading
from typing import Any

import redis
import structlog
from celery import Task

from celery_app import app
from metrics.progress import ChunkProgress, record_chunk
from metrics.redis_client import redis_client
from pipeline.chunk import ChunkMessage
from pipeline.lanes import PRIORITIES
from pipeline.settings import get_settings
from pipeline.stage_registry import STAGES, Stage, stage_named
from tasks.chunk_result import chunk_result
from tasks.chunk_runner import ChunkReport, run_chunk
from tasks.feeder import feed_lanes
from tasks.finalize import finalize_if_complete
from tasks.infrastructure import INFRASTRUCTURE_ERRORS
from tasks.notify import after_chunk
from tasks.status import refresh_progress
from tasks.windows import defer_if_shut

log = structlog.get_logger(__name__)
#: What a feed after a committed chunk may meet; the sweeper feeds in its place.
FEED_ERRORS: tuple[type[BaseException], ...] = (redis.RedisError, *INFRASTRUCTURE_ERRORS)


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


def _emit_progress(request: ChunkMessage, report: ChunkReport) -> None:
    delivered = len(report.succeeded) if stage_named(request.stage).terminal_success else 0
    change = ChunkProgress(
        request.stage,
        len(report.succeeded),
        len(report.failed),
        delivered,
        errors=report.failure_classes,
        rewrites=len(report.rewrites),
        waits=report.waits,
    )
    fused = _fused_progress(report)
    try:
        if not record_chunk(redis_client(), request.batch_id, change, *fused):
            # The hash was lost (Redis restarted empty): the counters alone would hold
            # only what happened since. The ledger, which holds this chunk, rebuilds it.
            refresh_progress(request.batch_id)
    except FEED_ERRORS as error:  # progress is rebuildable from the ledger (the sweeper)
        log.warning("progress.unavailable", batch_id=request.batch_id, error=str(error))
        return
    ended = delivered + len(report.failed) + len(report.fused.failed)
    after_chunk(request.batch_id, ended)  # 25/50/75/100 % notices


def _fused_progress(report: ChunkReport) -> tuple[ChunkProgress, ...]:
    """What the stage run inside the chunk (QC after writing) changed, under its own name."""
    if report.fused_stage is None:
        return ()
    fused = report.fused
    change = ChunkProgress(
        report.fused_stage,
        len(fused.succeeded),
        len(fused.failed),
        errors=fused.failure_classes,
        rewrites=len(fused.rewrites),
    )
    return (change,)


def _hand_on(request: ChunkMessage, report: ChunkReport) -> None:
    # What moved on (and QC's rewrites) waits in the pool now: feed the lane. Freed
    # slots may let work of any lane go, so then every lane is fed, high first.
    lanes = PRIORITIES if report.released_slots else (request.priority,)
    try:
        feed_lanes(lanes)
    except FEED_ERRORS as error:
        # The outcomes are committed; the sweeper feeds the pool within one interval.
        log.warning("feeder.unavailable", lane=request.priority, error=str(error))
    terminal = (
        report.failed
        or report.fused.failed
        or (stage_named(request.stage).terminal_success and report.succeeded)
    )
    if terminal:
        finalize_if_complete(request.batch_id)


def execute_stage(task: Task, stage: str, **kwargs: Any) -> dict[str, Any]:
    """Run one chunk of ``stage`` and pass its successes on; retry what may succeed later."""
    message = ChunkMessage.from_task(stage, kwargs)
    if not _is_second_run(task) and defer_if_shut(message):
        # Its stage's window closed while the message waited: the items wait for the next.
        return {"claimed": 0, "ok": 0, "failed": 0, "deferred": len(message.item_ids)}
    report = run_chunk(message, lease_owner(task), reclaim=_is_second_run(task))
    _emit_progress(message, report)
    _hand_on(message, report)
    if report.retry_ids:
        retry = message.with_items(report.retry_ids)
        # The per-item budget lives in the ledger (attempts), not in Celery's counter.
        raise task.retry(
            kwargs=retry.task_kwargs(),
            kwargsrepr=retry.task_repr(),
            countdown=report.retry_delay,
            max_retries=10_000,
        )
    return chunk_result(report)


def _register(stage: Stage) -> Task:
    # A scheduled stage's chunks get the guide's limit for a run (pipeline.schedule).
    soft, hard = get_settings().stage_time_limits(stage.name)

    @app.task(
        name=stage.task_name,
        bind=True,
        soft_time_limit=soft,
        time_limit=hard,
        autoretry_for=INFRASTRUCTURE_ERRORS,
        retry_backoff=True,
        retry_backoff_max=60,
        max_retries=20,
    )
    def stage_task(self: Task, **kwargs: Any) -> dict[str, Any]:
        return execute_stage(self, stage.name, **kwargs)

    stage_task.__doc__ = f"Run the {stage.name} stage over a chunk of item ids."
    return stage_task


#: One Celery task per stage, in stage order.
STAGE_TASKS: tuple[Task, ...] = tuple(_register(stage) for stage in STAGES)


@app.task(
    name="batchline.start_batch",
    autoretry_for=INFRASTRUCTURE_ERRORS,
    retry_backoff=True,
    max_retries=20,
)
def start_batch(batch_id: str, priority: str = "normal", fed: bool = False) -> dict[str, Any]:
    """Feed the batch's lane unless ``submit_batch`` did (``fed``); its orders wait in the pool.

    ``submit_batch`` feeds the lane itself; this task is the batch's handle (its
    id is the ``task_id`` the caller gets, shown in Flower) and the backstop when
    that feed failed. A message without ``fed`` (sent before it existed) feeds.
    """
    sent = 0 if fed else feed_lanes((priority,))
    log.info("batch.started", batch_id=batch_id, lane=priority, messages=sent, fed_at_submit=fed)
    return {"messages": sent}
