"""Operator controls: pause, resume and cancel a batch; halt and resume everything.

Each is a conditional change in the ledger; work that should run again is sent
again from the ledger, so nothing depends on messages dropped while stopped.
"""

from __future__ import annotations

import getpass
from typing import Any

import structlog

from ledger.batches import set_batch_status
from ledger.controls import halt, resume
from ledger.db import transaction
from ledger.pool import pool_due_retries, pooled_count, return_to_pool
from ledger.sweeps import cancel_idle_items
from pipeline.lanes import PRIORITIES
from pipeline.settings import get_settings
from pipeline.states import BatchStatus
from tasks.feeder import feed_lanes
from tasks.finalize import finalize_if_complete
from tasks.status import refresh_progress

log = structlog.get_logger(__name__)
_OPERATOR = getpass.getuser()


class ControlRefused(RuntimeError):
    """The batch is not in a state that allows this (e.g. resuming a running batch)."""


def _move(batch_id: str, allowed_from: tuple[str, ...], to: str) -> None:
    with transaction() as session:
        if not set_batch_status(
            session, batch_id, allowed_from=allowed_from, to=to, actor=_OPERATOR
        ):
            raise ControlRefused(
                f"batch {batch_id!r} is not {' or '.join(allowed_from).lower()}, or has ended"
            )
    log.info("batch.control", batch_id=batch_id, status=to)


def _send_waiting(batch_id: str = "") -> int:
    """Pool every waiting item (of one batch, or all), feed every lane; return how many wait."""
    settings = get_settings()
    with transaction() as session:
        return_to_pool(
            session,
            idle_lanes=PRIORITIES,
            grace_seconds=0,
            stale_seconds=settings.batch_queued_stale_seconds,
            batch_id=batch_id,
        )
        # Retries that came due while stopped found nothing to claim and were spent.
        pool_due_retries(session, lease_seconds=settings.batch_lease_seconds, batch_id=batch_id)
        waiting = pooled_count(session, batch_id)
    feed_lanes()
    return waiting


def pause_batch(batch_id: str) -> dict[str, Any]:
    """Stop claiming the batch's items; chunks already running finish.

    Raises:
        ControlRefused: the batch is not running.
    """
    _move(batch_id, (BatchStatus.RUNNING,), BatchStatus.PAUSED)
    refresh_progress(batch_id)
    return {"batch_id": batch_id, "status": "paused"}


def resume_batch(batch_id: str) -> dict[str, Any]:
    """Let a paused batch run again and send its waiting items out.

    Raises:
        ControlRefused: the batch is not paused.
    """
    _move(batch_id, (BatchStatus.PAUSED,), BatchStatus.RUNNING)
    refresh_progress(batch_id)
    return {"batch_id": batch_id, "status": "running", "redispatched": _send_waiting(batch_id)}


def cancel_batch(batch_id: str) -> dict[str, Any]:
    """End every order not being worked on as CANCELLED and finalize once the rest end.

    Orders a worker holds right now finish their current stage and are then
    cancelled by the sweeper; delivered orders stay delivered.

    Raises:
        ControlRefused: the batch has already ended.
    """
    _move(batch_id, (BatchStatus.RUNNING, BatchStatus.PAUSED), BatchStatus.CANCELLED)
    with transaction() as session:
        cancelled = cancel_idle_items(session, batch_id).get(batch_id, 0)
    finalized = finalize_if_complete(batch_id)
    refresh_progress(batch_id)
    return {"batch_id": batch_id, "cancelled": cancelled, "finalized": finalized is not None}


def halt_all(reason: str) -> dict[str, Any]:
    """Stop every worker from claiming anything (what a CRITICAL error does by itself)."""
    with transaction() as session:
        newly = halt(session, reason=reason, data={"by": _OPERATOR})
    log.critical("system.halted", reason=reason, by=_OPERATOR)
    return {"halted": True, "already": not newly}


def resume_all() -> dict[str, Any]:
    """Lift a halt after inspection and send all waiting work out again."""
    with transaction() as session:
        was_halted = resume(session, operator=_OPERATOR)
    sent = _send_waiting() if was_halted else 0
    log.warning("system.resumed", by=_OPERATOR, redispatched=sent)
    return {"resumed": was_halted, "redispatched": sent}
