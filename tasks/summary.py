"""``batchline.maintenance.daily_summary``: beat's summary of the previous UTC day.

Beat sends it daily at ``BATCH_SUMMARY_AT`` (UTC). It records one
``daily_summary`` event per day (a second run of the same day records nothing)
and logs the same figures.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

import structlog

from beat_schedule import SUMMARY_TASK
from celery_app import app
from ledger.batches import add_event
from ledger.db import transaction
from ledger.summary import day_figures, summarised

log = structlog.get_logger(__name__)


def daily_summary(now: datetime | None = None) -> dict[str, Any]:
    """Summarise the UTC day before ``now``; return the figures (``recorded``: whether new)."""
    moment = now or datetime.now(UTC)
    end = datetime.combine(moment.date(), time(0), tzinfo=UTC)
    start, day = end - timedelta(days=1), (end - timedelta(days=1)).date().isoformat()
    with transaction() as session:
        if summarised(session, day):
            return {"day": day, "recorded": False}
        figures = {"day": day, **day_figures(session, start, end)}
        add_event(session, batch_id=None, kind="daily_summary", data=figures)
    log.info("summary.daily", **figures)
    return {**figures, "recorded": True}


@app.task(name=SUMMARY_TASK, ignore_result=True)
def daily_summary_task() -> dict[str, Any]:
    """Record the previous UTC day's summary event (beat, at ``BATCH_SUMMARY_AT``)."""
    return daily_summary()
