"""``delete_batch``: remove a finalized batch's orders and outputs, keep its receipts.

Runs in bounded steps (``BATCH_PRUNE_BATCH_SIZE`` orders per transaction, like
retention) and is idempotent: a delete interrupted halfway is finished by the next
call. The answer and a ``batch_deleted`` event (kept in the log, with no batch)
say what went and how many delivery receipts stayed.
"""

from __future__ import annotations

from typing import Any

import redis
import structlog
from sqlalchemy.exc import IntegrityError

from ledger.batches import add_event, find_batch
from ledger.db import transaction
from ledger.deletion import delete_batch_row, delete_items_step, deletion_refusal
from metrics.progress import forget_progress
from metrics.redis_client import redis_client
from pipeline.errors import UnknownBatch
from pipeline.settings import get_settings
from tasks.control import ControlRefused

log = structlog.get_logger(__name__)


class DeleteRefused(ControlRefused):
    """The batch is open, or recoveries refer to it."""


def delete_batch(batch_id: str) -> dict[str, Any]:
    """Delete a finalized batch: its orders and stage outputs, its event log, its row.

    Delivery receipts and idempotency keys are kept, so the same orders submitted
    again (same batch id, or a recovery lineage rooted at it) are never published twice.

    Returns:
        ``{"batch_id", "deleted": {"orders", "outputs"}, "receipts_kept"}``.

    Raises:
        UnknownBatch: no batch has this id.
        DeleteRefused: the batch is still open, or has recoveries.
    """
    with transaction() as session:
        if find_batch(session, batch_id) is None:
            raise UnknownBatch(f"no batch with id {batch_id!r}")
        refusal = deletion_refusal(session, batch_id)
    if refusal is not None:
        raise DeleteRefused(refusal)
    try:
        orders, outputs = _delete_items(batch_id)
        with transaction() as session:
            kept = delete_batch_row(session, batch_id)
            deleted = {"orders": orders, "outputs": outputs}
            report = {"batch_id": batch_id, "deleted": deleted, **kept}
            add_event(session, batch_id=None, kind="batch_deleted", data=report)
    except IntegrityError:  # a recovery of it began meanwhile: its orders point at these
        raise DeleteRefused(
            f"batch {batch_id!r} gained a recovery while being deleted: delete that first"
        ) from None
    _forget_progress(batch_id)
    log.info("batch.deleted", **report)
    return report


def _forget_progress(batch_id: str) -> None:
    try:
        forget_progress(redis_client(), batch_id)
    except redis.RedisError as error:  # the ledger is done; the hash expires on its TTL
        log.warning("batch.progress_not_forgotten", batch_id=batch_id, error=str(error))


def _delete_items(batch_id: str) -> tuple[int, int]:
    limit = get_settings().batch_prune_batch_size
    orders = outputs = 0
    while True:
        with transaction() as session:  # one short transaction per step
            step_orders, step_outputs = delete_items_step(session, batch_id, limit)
        orders, outputs = orders + step_orders, outputs + step_outputs
        if step_orders == 0:
            return orders, outputs
