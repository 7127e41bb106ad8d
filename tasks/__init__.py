"""Celery tasks and the submission API: thin shells around ``pipeline``.

``from tasks import submit_batch, get_batch_status, batch_status, OrderIntake``.
"""

from __future__ import annotations

from tasks import notify as _notify  # noqa: F401 - registers batchline.maintenance.notify
from tasks import retention as _retention  # noqa: F401 - registers batchline.maintenance.prune
from tasks import stages as _stages  # noqa: F401 - registers the stage tasks with the app
from tasks import summary as _summary  # noqa: F401 - registers batchline.maintenance.daily_summary
from tasks import warming as _warming  # noqa: F401 - registers the warm task
from tasks import windows as _windows  # noqa: F401 - registers the open_window tasks
from tasks.intake import IntakeConflict, OrderIntake
from tasks.status import batch_status, get_batch_status
from tasks.submit import BatchConflict, submit_batch

__all__ = [
    "BatchConflict",
    "IntakeConflict",
    "OrderIntake",
    "batch_status",
    "get_batch_status",
    "submit_batch",
]
