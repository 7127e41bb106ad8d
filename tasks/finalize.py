"""End a batch exactly once, when its last item becomes terminal."""

from __future__ import annotations

import structlog

from ledger.batches import finalize_if_done
from ledger.db import transaction
from ledger.lineage import note_recovery_finalized
from metrics.progress import mark_finished
from metrics.redis_client import redis_client
from pipeline.notify import FINALIZED
from tasks.completion import complete
from tasks.notify import record_notification

log = structlog.get_logger(__name__)


def finalize_if_complete(batch_id: str) -> str | None:
    """Finalize the batch if nothing is left open; return the status the one time it ends.

    Runs in its own transaction after the chunk's outcomes committed, so the last
    chunk to commit always sees every item terminal; the ledger's conditional
    update lets only one caller win.
    """
    with transaction() as session:
        status = finalize_if_done(session, batch_id)
        if status is not None:
            note_recovery_finalized(session, batch_id, status)
            # In the finalize's own transaction: the notice exists if and only if it ended.
            record_notification(session, batch_id, FINALIZED, {"status": status})
    if status is None:
        return None
    log.info("batch.finalized", batch_id=batch_id, status=status)
    try:
        mark_finished(redis_client(), batch_id, status)
    except Exception as error:
        log.warning("progress.unavailable", batch_id=batch_id, error=str(error))
    complete(batch_id)  # the task_id resolves; on_complete is sent (or left to the sweeper)
    return status
