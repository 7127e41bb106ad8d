"""The housekeeping task: beat's periodic sweep on ``batch.maintenance``."""

from __future__ import annotations

from typing import Any

from celery_app import app
from recovery.sweeper import sweep


@app.task(name="batchline.maintenance.sweep", ignore_result=True)
def sweep_task() -> dict[str, Any]:
    """Run one sweep (beat sends this every ``BATCH_SWEEP_INTERVAL_SECONDS``)."""
    return sweep().as_dict()
