"""``submit_batch``: validate at the edge, write the whole batch in one transaction, dispatch."""

from __future__ import annotations

import uuid
from typing import Any

import redis
import structlog
from sqlalchemy.exc import IntegrityError

from cache_warming import warm_cache_before_batch
from ledger.batches import BatchRow, find_batch, insert_batch
from ledger.db import transaction
from metrics.progress import init_progress
from metrics.redis_client import redis_client
from pipeline.manifest import ManifestError, Submission, validate_submission
from pipeline.settings import get_settings
from tasks.statistics import refresh_statistics

log = structlog.get_logger(__name__)


class BatchConflict(ManifestError):
    """A ``batch_id`` was reused with different content."""


def submit_batch(
    documents: Any,
    project_uuid: Any,
    priority: Any = None,
    options: Any = None,
) -> dict[str, str]:
    """Submit a batch of orders and start it.

    Args:
        documents: the orders (see ``pipeline.manifest.OrderDocument``).
        project_uuid: the project the batch belongs to.
        priority: ``high``, ``normal`` or ``low`` (default ``BATCH_DEFAULT_PRIORITY``).
        options: ``warm_cache``, ``max_retries``, a client-chosen ``batch_id`` and
            ``on_complete`` (a registered task called once with the final status).

    Returns:
        ``{"batch_id", "task_id"}``; ``task_id`` is the batch's handle: the id of
        its ``start_batch`` task, which feeds its lane, and the id its final status
        is stored under when it finalizes (``AsyncResult(task_id).get()``).

    Raises:
        ManifestError: the input is invalid (nothing is written).
        BatchConflict: ``options.batch_id`` exists with different content.
    """
    settings = get_settings()
    submission = validate_submission(
        documents,
        project_uuid,
        priority if priority is not None else settings.batch_default_priority,
        options,
        max_items=settings.batch_max_items,
    )
    _check_on_complete(submission.options.on_complete)
    batch_id = submission.options.batch_id or uuid.uuid4().hex
    existing = _existing(batch_id, submission)
    if existing is not None:
        return existing
    task_id = uuid.uuid4().hex
    try:
        with transaction() as session:
            insert_batch(
                session,
                batch_id=batch_id,
                submission=submission,
                manifest_sha256=submission.digest(),
                task_id=task_id,
            )
    except IntegrityError:  # the same batch_id was submitted concurrently
        existing = _existing(batch_id, submission)
        if existing is None:
            raise
        return existing
    refresh_statistics(batch_id, len(submission.documents))
    _start(batch_id, submission, task_id)
    return {"batch_id": batch_id, "task_id": task_id}


def _check_on_complete(name: str | None) -> None:
    """``options.on_complete`` must name a task this app knows, or it could never run."""
    if name is None:
        return
    from celery_app import app

    app.loader.import_default_modules()  # the app's ``include`` modules register theirs
    if name not in app.tasks:
        raise ManifestError("options.on_complete", f"no registered Celery task {name!r}")


def _existing(batch_id: str, submission: Submission) -> dict[str, str] | None:
    with transaction() as session:
        row: BatchRow | None = find_batch(session, batch_id)
    if row is None:
        return None
    if row.manifest_sha256 != submission.digest():
        raise BatchConflict(
            "options.batch_id", f"batch {batch_id!r} already exists with different content"
        )
    log.info("batch.resubmitted", batch_id=batch_id)
    return {"batch_id": batch_id, "task_id": row.task_id or ""}


def should_warm(submission: Submission, threshold: int) -> bool:
    """``options.warm_cache`` when given, else whether the batch reaches the threshold."""
    if submission.options.warm_cache is not None:
        return submission.options.warm_cache
    return len(submission.documents) >= threshold


def _warm(batch_id: str, submission: Submission) -> None:
    """Warm preflight's caches: here for a high batch (as the batch guide asks), else on
    ``batch.maintenance`` so the submit returns at once. A failed warm only costs reads."""
    if not should_warm(submission, get_settings().batch_cache_warm_threshold):
        return
    wait = submission.priority == "high"
    try:
        warmed = warm_cache_before_batch(
            [order.to_json() for order in submission.documents], wait=wait
        )
    except Exception as error:
        log.warning("cache.warm_failed", batch_id=batch_id, error=str(error))
        return
    log.info("cache.warmed" if wait else "cache.warm_queued", batch_id=batch_id, **warmed)


def _start(batch_id: str, submission: Submission, task_id: str) -> None:
    from celery_app import LANES
    from tasks.feeder import feed
    from tasks.stages import start_batch

    init_progress(redis_client(), batch_id, len(submission.documents))
    fed = True
    try:
        feed(submission.priority, pooled=True)  # first chunks out now, not after a task hop
    except redis.RedisError as error:
        fed = False
        log.warning("feeder.unavailable", batch_id=batch_id, error=str(error))
    # With the lane fed here, start_batch is only the batch's handle: it must not feed
    # again (a second feed once cost the one prefork process 20-33 ms just before a
    # high batch's first chunk), and it goes behind the chunks just sent, in the
    # lane's own queue: from batch.maintenance, polled first, it was one more message
    # hop between a high batch's first chunk and its second. Unfed, it is the
    # backstop that feeds: polled first.
    start_batch.apply_async(
        kwargs={"batch_id": batch_id, "priority": submission.priority, "fed": fed},
        task_id=task_id,
        **({"queue": LANES[submission.priority]} if fed else {}),
    )
    # A high batch's warm runs while its first chunks travel to a worker (it took
    # 5-40 ms of the first stage's wait before them); submit_batch still returns
    # only once the caches are warm.
    _warm(batch_id, submission)
    log.info("batch.submitted", batch_id=batch_id, items=len(submission.documents))
