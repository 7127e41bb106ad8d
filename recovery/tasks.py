"""The recovery task family and the housekeeping sweep, as Celery tasks.

``analyze_batch_failures`` and ``recover_failed_batch`` run on ``batch.recovery``
(the ``batchline.recovery.`` prefix routes them) and keep their results, so a
caller can wait on them::

    from recovery.tasks import analyze_batch_failures, recover_failed_batch

    report = analyze_batch_failures.apply_async(args=[batch_id]).get(timeout=60)
    result = recover_failed_batch.apply_async(args=[batch_id, {"retry_all": True}]).get()

Called directly (``analyze_batch_failures(batch_id)``) each runs in the caller's
process, like the plain functions in ``recovery.analysis`` and ``recovery.recover``.
Bad input raises (``UnknownBatch``, ``RecoveryRefused`` naming the field), and
``.get()`` re-raises the same type.
"""

from __future__ import annotations

from typing import Any

from celery_app import app
from recovery import analysis, recover
from recovery.sweeper import sweep


@app.task(name="batchline.maintenance.sweep", ignore_result=True)
def sweep_task() -> dict[str, Any]:
    """Run one sweep (beat sends this every ``BATCH_SWEEP_INTERVAL_SECONDS``)."""
    return sweep().as_dict()


# The app ignores results by default; these answer a caller's .get(), so they keep theirs.
@app.task(name="batchline.recovery.analyze_batch_failures", ignore_result=False)
def analyze_batch_failures(batch_id: str) -> dict[str, Any]:
    """The failure report of ``batch_id`` (see :func:`recovery.analysis.analyze_batch_failures`)."""
    return analysis.analyze_batch_failures(batch_id)


@app.task(name="batchline.recovery.recover_failed_batch", ignore_result=False)
def recover_failed_batch(batch_id: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Recover ``batch_id``'s failed orders (see :func:`recovery.recover.recover_failed_batch`)."""
    return recover.recover_failed_batch(batch_id, options)
