"""Fresh planner statistics once a batch is stored: the shell around ``ledger.statistics``."""

from __future__ import annotations

import structlog
from sqlalchemy.exc import DBAPIError

from ledger.db import is_lock_timeout, short_lock_waits, transaction
from ledger.statistics import analyze, stale_tables, worth_checking

log = structlog.get_logger(__name__)

#: How long ANALYZE waits for a table's lock: another ANALYZE or a vacuum holding it
#: means fresh statistics are on their way already, and a submission must not wait.
LOCK_TIMEOUT_MS = 200


def refresh_statistics(batch_id: str, added: int) -> list[str]:
    """Analyze the tables ``added`` new orders alone made stale; return which were analyzed.

    Called after the batch's commit and before its first feed, so its first chunks
    are planned on statistics that know it (``ledger.statistics``: without this a
    100,000-order batch ran its first 80 seconds at half speed). The batch is stored
    already: a failure here costs speed, never the batch.
    """
    if not worth_checking(added):
        return []
    try:
        with short_lock_waits(LOCK_TIMEOUT_MS), transaction() as session:
            tables = stale_tables(session, added)
            analyze(session, tables)
    except DBAPIError as error:
        # A lock timeout is routine (someone analyzes already); anything else is not.
        emit = log.info if is_lock_timeout(error) else log.warning
        emit("ledger.analyze_skipped", batch_id=batch_id, error=str(error.orig))
        return []
    if tables:
        log.info("ledger.analyzed", batch_id=batch_id, items=added, tables=tables)
    return tables
