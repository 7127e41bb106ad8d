"""The Celery form of ``analyze_batch_failures``, on ``batch.recovery``."""

from __future__ import annotations

from typing import Any

from celery_app import app
from recovery.analysis import analyze_batch_failures as analyse_batch


# The app ignores results by default; this one answers a caller's .get(), so it keeps its own.
@app.task(name="batchline.recovery.analyze_batch_failures", ignore_result=False)
def analyze_batch_failures(batch_id: str) -> dict[str, Any]:
    """``analyze_batch_failures.apply_async(args=[batch_id]).get()``: the failure report.

    An unknown batch raises ``recovery.analysis.UnknownBatch``, which ``.get()`` re-raises.
    """
    return analyse_batch(batch_id)
