"""The sweeper, run by beat every ``BATCH_SWEEP_INTERVAL_SECONDS`` on ``batch.maintenance``.

It makes completion independent of any message: work whose lease ran out or
whose message is gone is sent again from the ledger, cancelled batches are
wound down, missed finalizes happen, and lost progress hashes are rebuilt.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any, TypeVar

import redis
import structlog
from redis.exceptions import LockNotOwnedError
from redis.lock import Lock
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from celery_app import LANES, lane_queues
from ledger.controls import halt_reason
from ledger.db import is_lock_timeout, short_lock_waits, transaction
from ledger.pool import refresh_scores, return_to_pool
from ledger.sweeps import (
    active_batches,
    batches_ready_to_finalize,
    cancel_idle_items,
    delete_expired_idempotency_keys,
)
from metrics.keys import progress_key, queue_key, sweeper_lock_key
from metrics.progress import COMPLETE_FIELD
from metrics.redis_client import redis_client
from pipeline.settings import get_settings
from recovery.slots import reconcile_slots
from tasks.completion import resend_completions
from tasks.feeder import feed_lanes
from tasks.finalize import finalize_if_complete
from tasks.notify import resend_unsent
from tasks.status import refresh_progress

log = structlog.get_logger(__name__)
_T = TypeVar("_T")


@dataclass
class SweepReport:
    """What one sweep did."""

    skipped: bool = False
    halted: bool = False
    idle_lanes: list[str] = field(default_factory=list)
    #: items put back in the pool: lease ran out, or their message was lost
    redispatched: int = 0
    #: messages the feeder published during the sweep
    fed: int = 0
    #: open items whose priority score changed as they waited
    rescored: int = 0
    #: concurrency slots whose holder is no longer queued or running
    released_slots: int = 0
    cancelled: int = 0
    finalized: list[str] = field(default_factory=list)
    rebuilt_progress: int = 0
    expired_idempotency_keys: int = 0
    #: on_complete callbacks sent from the outbox, results stored again for lost ones
    completions: dict[str, int] = field(default_factory=dict)
    #: notifications recorded but never sent (sender died, message lost), enqueued again
    notifications: int = 0
    #: steps skipped because rows stayed locked past BATCH_SWEEP_LOCK_TIMEOUT_MS
    deferred_steps: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (the task's return value and the CLI's output)."""
        return asdict(self)


def idle_lanes(client: redis.Redis) -> list[str]:
    """Priorities whose queues (CPU and I/O) hold no message right now."""
    return [p for p in LANES if all(client.llen(queue_key(q)) == 0 for q in lane_queues(p))]


def sweep() -> SweepReport:
    """Run one sweep unless another is running; see the module docstring."""
    client = redis_client()
    lock = _sweeper_lock(client)
    if not lock.acquire():
        return SweepReport(skipped=True)
    try:
        with short_lock_waits(get_settings().batch_sweep_lock_timeout_ms):
            return _sweep(client)
    finally:
        _release(lock)


def _sweeper_lock(client: redis.Redis) -> Lock:
    # The lock expires so a dead sweeper cannot stop sweeps for good. redis-py's Lock
    # releases only while the key holds its own token (one Lua call): a sweep that
    # outlived its lock never deletes the next sweep's. One Lock object per sweep,
    # never shared between threads: no thread-local token needed.
    seconds = max(5, math.ceil(get_settings().batch_sweep_interval_seconds * 2))
    return Lock(client, sweeper_lock_key(), timeout=seconds, blocking=False, thread_local=False)


def _release(lock: Lock) -> None:
    try:
        lock.release()
    except LockNotOwnedError:
        log.warning("sweep.outlived_its_lock", timeout_seconds=lock.timeout)


def _sweep(client: redis.Redis) -> SweepReport:
    settings = get_settings()
    report = SweepReport(idle_lanes=idle_lanes(client))
    with transaction() as session:
        report.halted = halt_reason(session) is not None

    def pool(session: Session) -> dict[str, int]:
        return return_to_pool(
            session,
            idle_lanes=report.idle_lanes,
            grace_seconds=settings.batch_sweep_grace_seconds,
            stale_seconds=settings.batch_queued_stale_seconds,
        )

    # One transaction per step: a step that meets a stranger's lock gives up alone.
    cancelled = _bounded(report, "cancel", _in_transaction(cancel_idle_items), dict[str, int]())
    report.expired_idempotency_keys = _bounded(
        report, "expire_keys", _in_transaction(delete_expired_idempotency_keys), 0
    )
    returned = _bounded(report, "return_to_pool", _in_transaction(pool), dict[str, int]())
    report.redispatched = sum(returned.values())
    report.rescored = _bounded(report, "rescore", _in_transaction(refresh_scores), 0)
    report.cancelled = sum(cancelled.values())
    for batch_id in cancelled:
        refresh_progress(batch_id)
    report.released_slots = reconcile_slots(client)
    if not report.halted:  # after a halt, only resume-all sends work again
        report.fed = _bounded(report, "feed", feed_lanes, 0)
    report.finalized = _finalize_stragglers(report)
    report.rebuilt_progress = _rebuild_lost_progress(client)
    report.completions = _bounded(report, "completions", resend_completions, dict[str, int]())
    report.notifications = _bounded(
        report, "notifications", partial(resend_unsent, settings.batch_sweep_grace_seconds), 0
    )
    changed = (report.redispatched, report.cancelled, report.finalized, report.rebuilt_progress)
    completed = any(report.completions.values())
    busy = report.fed or report.rescored or report.released_slots or report.notifications
    if any(changed) or completed or busy:
        log.info("sweep", **report.as_dict())
    return report


def _in_transaction(work: Callable[[Session], _T]) -> Callable[[], _T]:
    def run() -> _T:
        with transaction() as session:
            return work(session)

    return run


def _bounded(report: SweepReport, step: str, work: Callable[[], _T], otherwise: _T) -> _T:
    """Run one step; if it would wait on a row lock past the sweep's bound, skip it.

    The rows stay as they are and the next sweep tries again: recovery never
    waits on a stranger's locks (a frozen worker keeps them until PostgreSQL ends
    its idle transaction).
    """
    try:
        return work()
    except DBAPIError as error:
        if not is_lock_timeout(error):
            raise
        report.deferred_steps.append(step)
        log.warning("sweep.step_deferred", step=step, reason="rows locked by another session")
        return otherwise


def _finalize_stragglers(report: SweepReport) -> list[str]:
    with transaction() as session:
        ready = batches_ready_to_finalize(session)
    return [
        batch_id
        for batch_id in ready
        if _bounded(report, f"finalize:{batch_id}", partial(finalize_if_complete, batch_id), None)
    ]


def _rebuild_lost_progress(client: redis.Redis) -> int:
    with transaction() as session:
        batch_ids = active_batches(session)
    pipe = client.pipeline(transaction=False)
    for batch_id in batch_ids:
        # Missing, or holding only counts since a loss: either way rebuilt from the ledger.
        pipe.hexists(progress_key(batch_id), COMPLETE_FIELD)
    lost = [b for b, found in zip(batch_ids, pipe.execute(), strict=True) if not found]
    for batch_id in lost:
        refresh_progress(batch_id)
    return len(lost)
