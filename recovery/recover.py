"""``recover_failed_batch``: send a finished batch's failed orders round again, once.

The plain function validates at the edge, writes the recovery batch and its
items in one transaction (serialised per lineage, so a concurrent or repeated
call creates no second copy of any order), then feeds the recovery's lane. The
Celery task of the same name runs it on ``batch.recovery``.
"""

from __future__ import annotations

from typing import Any

import redis
import structlog
from sqlalchemy.orm import Session

from ledger.db import transaction
from ledger.lineage import (
    Origin,
    failed_items,
    find_origin,
    insert_recovery_batch,
    insert_recovery_items,
    lineage_links,
    lock_lineage,
    next_round,
    record_recovery_events,
    recovery_task_id,
)
from metrics.progress import init_progress
from metrics.redis_client import redis_client
from pipeline.recovery import (
    RecoveryOptions,
    RecoveryPlan,
    RecoveryRefused,
    parse_options,
    plan_recovery,
    recovery_batch_id,
)
from tasks.statistics import refresh_statistics

log = structlog.get_logger(__name__)


def recover_failed_batch(batch_id: str, options: Any = None) -> dict[str, Any]:
    """Recover the failed orders of the finished batch ``batch_id`` in a new batch.

    Each taken order resumes at the stage that failed, from its lineage's stored
    outputs, in a recovery batch with its own progress, status and finalize.

    Args:
        batch_id: a finished batch (an original or a recovery).
        options: ``max_retries`` (3), ``retry_all`` (False), ``priority`` (the
            batch's lane), ``order_ids`` (all failed orders).

    Returns:
        ``recovery_batch_id`` (None when nothing was taken), ``task_id`` (its
        handle), ``documents_to_retry``, ``skipped`` (count per reason) and
        ``origin_batch_id``.

    Raises:
        RecoveryRefused: unknown or unfinished batch, an order id not in the batch,
            an invalid option; nothing is written.
    """
    parsed = parse_options(options)
    with transaction() as session:
        origin = _finished_origin(session, batch_id)
        lock_lineage(session, origin.root_batch_id)
        plan = _plan(session, origin, parsed)
        created = _write(session, origin, parsed, plan) if plan.picks else None
        recovered_by = lineage_links(session, origin.batch_id).get("recovered_by", [])
    result = {
        "origin_batch_id": origin.batch_id,
        "recovery_batch_id": created,
        "task_id": recovery_task_id(created) if created else None,
        "documents_to_retry": len(plan.picks) if created else 0,
        "skipped": plan.skipped,
        "recovered_by": recovered_by,
    }
    if created:
        refresh_statistics(created, len(plan.picks))
        _start(created, parsed.priority or origin.priority, len(plan.picks))
    log.info("batch.recovery", **result)
    return result


def _finished_origin(session: Session, batch_id: str) -> Origin:
    origin = find_origin(session, batch_id) if isinstance(batch_id, str) else None
    if origin is None:
        raise RecoveryRefused("batch_id", f"no batch with id {batch_id!r}")
    if not origin.finished:
        raise RecoveryRefused(
            "batch_id",
            f"batch {batch_id!r} is {origin.status.lower()}: only a finished batch can be"
            " recovered (pause, cancel or wait for it)",
        )
    return origin


def _plan(session: Session, origin: Origin, options: RecoveryOptions) -> RecoveryPlan:
    failed, named = failed_items(session, origin.batch_id, options.order_ids)
    not_failed = 0
    if options.order_ids is not None:
        unknown = sorted(set(options.order_ids) - {item.order_id for item in named})
        if unknown:
            shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
            raise RecoveryRefused("options.order_ids", f"not in batch {origin.batch_id!r}: {shown}")
        not_failed = sum(1 for item in named if item.state != "FAILED")
    return plan_recovery(failed, options, not_failed)


def _write(session: Session, origin: Origin, options: RecoveryOptions, plan: RecoveryPlan) -> str:
    """The recovery batch, its items (in their resume states, in the pool) and the events."""
    recovery_round = next_round(session, origin.root_batch_id)
    new_id = recovery_batch_id(origin.root_batch_id, recovery_round)
    lane = options.priority or origin.priority
    insert_recovery_batch(
        session,
        origin=origin,
        recovery_batch_id=new_id,
        recovery_round=recovery_round,
        lane=lane,
        max_retries=options.max_retries,
        picks=plan.picks,
    )
    inserted = insert_recovery_items(session, recovery_batch_id=new_id, lane=lane, picks=plan.picks)
    if inserted != len(plan.picks):
        # The lineage lock makes this unreachable; if it ever happens, write nothing.
        raise RecoveryRefused(
            "batch_id", f"a concurrent recovery took orders of {origin.batch_id!r}; try again"
        )
    record_recovery_events(
        session,
        origin=origin,
        recovery_batch_id=new_id,
        recovery_round=recovery_round,
        data={"items": inserted, "skipped": plan.skipped, "retry_all": options.retry_all},
    )
    return new_id


def _start(recovery_id: str, lane: str, items: int) -> None:
    """Progress and a feed now; if Redis is down, the sweeper does both within an interval."""
    from tasks.feeder import feed_lanes

    try:
        init_progress(redis_client(), recovery_id, items)
        feed_lanes((lane,))
    except redis.RedisError as error:
        log.warning("feeder.unavailable", batch_id=recovery_id, error=str(error))
