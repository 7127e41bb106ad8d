"""``batchline.maintenance.prune``: beat's daily retention run (``BATCH_PRUNE_AT``, UTC).

Each checkpoint kind (``pipeline.retention``) past its ``BATCH_RETENTION_<KIND>_DAYS``
is replaced by a tombstone, ``BATCH_PRUNE_BATCH_SIZE`` rows per transaction, so
no lock is held for long and a crash loses at most one short transaction (a
rerun continues: pruning is idempotent). The run ends with a ``pruned`` event
and a log line holding the counts per kind.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import structlog

from celery_app import app
from ledger.batches import add_event
from ledger.db import transaction
from ledger.retention import prune_batch
from pipeline.retention import KINDS, CheckpointKind, cutoff, tombstone
from pipeline.settings import get_settings

log = structlog.get_logger(__name__)


def prune(now: datetime | None = None) -> dict[str, Any]:
    """Prune every kind past its retention; return ``{"pruned": {kind: n}, ...}``."""
    started, moment = time.monotonic(), now or datetime.now(UTC)
    counts = {kind.name: _prune_kind(kind, moment) for kind in KINDS}
    report = {
        "pruned": counts,
        "at": moment.isoformat(),
        "seconds": round(time.monotonic() - started, 3),
    }
    with transaction() as session:
        add_event(session, batch_id=None, kind="pruned", data=report)
    log.info("retention.pruned", **report)
    return report


def _prune_kind(kind: CheckpointKind, now: datetime) -> int:
    settings = get_settings()
    expired_before = cutoff(now, settings.retention_days(kind.name))
    if expired_before is None:
        return 0
    after, total, marker = 0, 0, tombstone(kind.name, now)
    while True:
        with transaction() as session:  # one short transaction per batch of rows
            ids = prune_batch(
                session,
                stage=kind.stage,
                cutoff=expired_before,
                tombstone=marker,
                after=after,
                limit=settings.batch_prune_batch_size,
            )
        total += len(ids)
        if len(ids) < settings.batch_prune_batch_size:
            return total
        after = ids[-1]


@app.task(name="batchline.maintenance.prune", ignore_result=True)
def prune_task() -> dict[str, Any]:
    """Run the retention prune (beat sends this daily at ``BATCH_PRUNE_AT`` UTC)."""
    return prune()
