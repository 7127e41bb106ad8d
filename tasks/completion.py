"""Completion as Celery sees it: the batch's ``task_id`` resolves, ``on_complete`` runs once.

A batch is not one Celery task, so nothing stores a result under the ``task_id``
``submit_batch`` returned (``start_batch`` ignores its result). When the batch
finalizes, :func:`complete` stores the final status under that id, so
``AsyncResult(task_id).get(timeout=...)`` returns it as it would a chord's
callback, and sends the ``options.on_complete`` task from the ledger's outbox.
The sweeper calls :func:`resend_completions` for what a killed worker or an
emptied Redis lost.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any, Final

import structlog
from celery import states

from celery_app import app
from ledger.batches import add_event
from ledger.completion import (
    Finished,
    claim_on_complete,
    pending_on_complete,
    recently_finalized,
)
from ledger.db import transaction
from ledger.models import Batch

log = structlog.get_logger(__name__)

#: Namespace of callback task ids: one id per batch, the same if it is ever sent again.
CALLBACK_NAMESPACE: Final = uuid.UUID("0c9b6a43-56a2-4f33-b0e8-7f0f3bb1b8d5")
#: How many outbox entries and stored results one sweep looks at (constant work per sweep).
SWEEP_LIMIT: Final = 200


def final_status(batch_id: str) -> dict[str, Any]:
    """The finalized batch's status, as ``get_batch_status`` answers it."""
    from tasks.status import batch_status

    return batch_status(batch_id)


def callback_task_id(batch_id: str) -> str:
    """The id the ``on_complete`` task of ``batch_id`` is sent with."""
    return uuid.uuid5(CALLBACK_NAMESPACE, batch_id).hex


def complete(batch_id: str) -> None:
    """After the finalize committed: store the result, send the callback.

    Failures are logged, never raised: the batch is final in the ledger, and the
    sweeper stores or sends whatever is missing within an interval.
    """
    try:
        status = final_status(batch_id)
        store_final_result(batch_id, status)
        send_on_complete(batch_id, status)
    except Exception as error:  # the sweeper retries; finalize must not fail
        log.warning("batch.completion_deferred", batch_id=batch_id, error=str(error))


def store_final_result(batch_id: str, status: dict[str, Any]) -> None:
    """Store ``status`` as the SUCCESS result of the batch's ``task_id`` (a no-op without one)."""
    with transaction() as session:
        batch = session.get(Batch, batch_id)
        task_id = batch.task_id if batch is not None else None
    if task_id:
        app.backend.store_result(task_id, status, states.SUCCESS)


def send_on_complete(batch_id: str, status: dict[str, Any] | None = None) -> bool:
    """Send the batch's ``on_complete`` task unless it was sent; True if this call sent it.

    The ledger's mark and the send share one transaction: the message is published
    while the row is locked, then the mark commits. A sender killed before the
    commit leaves the entry for the sweeper; only a kill between the publish and
    the commit (a few milliseconds) could send it twice, which the callback's
    fixed task id (:func:`callback_task_id`) lets a receiver recognise.
    """
    with transaction() as session:
        name = claim_on_complete(session, batch_id)
        if name is None:
            return False
        payload = status if status is not None else final_status(batch_id)
        app.send_task(name, args=[payload], task_id=callback_task_id(batch_id))
        add_event(session, batch_id=batch_id, kind="on_complete_sent", data={"task": name})
    log.info("batch.on_complete_sent", batch_id=batch_id, task=name)
    return True


def resend_completions() -> dict[str, int]:
    """The sweeper's part: send pending callbacks, store results Redis lost.

    Returns ``{"callbacks": sent, "results": restored}``.
    """
    with transaction() as session:
        pending = pending_on_complete(session, SWEEP_LIMIT)
        finished = recently_finalized(session, _result_seconds(), SWEEP_LIMIT)
    sent = sum(1 for batch_id in pending if send_on_complete(batch_id))
    missing = _missing_results(finished)
    for batch in missing:
        store_final_result(batch.batch_id, final_status(batch.batch_id))
    return {"callbacks": sent, "results": len(missing)}


def _result_seconds() -> float:
    expires = app.conf.result_expires
    if isinstance(expires, timedelta):
        return expires.total_seconds()
    return float(expires or 0) or 86_400.0


def _missing_results(finished: list[Finished]) -> list[Finished]:
    """Which of ``finished`` have no result in the backend (one pipelined round trip)."""
    if not finished:
        return []
    backend = app.backend
    pipe = backend.client.pipeline(transaction=False)
    for batch in finished:
        pipe.exists(backend.get_key_for_task(batch.task_id))
    return [b for b, found in zip(finished, pipe.execute(), strict=True) if not found]


@app.task(name="batchline.maintenance.log_completion", ignore_result=True)
def log_completion(status: dict[str, Any]) -> None:
    """A ready-made ``on_complete`` task: log the final status and record it as an event."""
    batch_id = str(status.get("batch_id", ""))
    log.info("batch.completed", batch_id=batch_id, status=status.get("status"))
    with transaction() as session:
        add_event(
            session,
            batch_id=batch_id or None,
            kind="on_complete_called",
            data={"status": status.get("status")},
        )
