"""The ids every log line of a running task carries, bound with structlog's contextvars.

Celery's ``task_prerun`` binds them and ``task_postrun`` clears them (both in
``celery_app``); the chunk runner adds the order an item thread works on. Every
structlog line, and every stdlib line routed through ``metrics.logs``, merges them:
``grep`` or ``jq 'select(.batch_id == "...")'`` finds all lines of a batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import structlog

from pipeline.stage_registry import STAGE_NAMES, stage_task_name

#: Task name -> stage, for the tasks whose keyword arguments are a chunk message.
_STAGE_OF_TASK = {stage_task_name(stage): stage for stage in STAGE_NAMES}


def task_fields(task_id: str, task_name: str, kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """The fields to bind for one run of a task: its id and name, and for a chunk its
    batch, stage, lane and size.

    Never raises: a malformed message is the task's to report, not its logging's.
    """
    fields: dict[str, Any] = {"task_id": task_id, "task": task_name}
    kwargs = kwargs or {}
    if isinstance(kwargs.get("batch_id"), str):
        fields["batch_id"] = kwargs["batch_id"]
    if task_name in _STAGE_OF_TASK:
        fields["stage"] = _STAGE_OF_TASK[task_name]
        items = kwargs.get("item_ids")
        if isinstance(items, list | tuple):
            fields["chunk_size"] = len(items)
        if isinstance(kwargs.get("priority"), str):
            fields["lane"] = kwargs["priority"]
    return fields


def bind_task(task_id: str, task_name: str, kwargs: Mapping[str, Any] | None) -> None:
    """Start a task's log context (anything a previous task left is dropped)."""
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(**task_fields(task_id, task_name, kwargs))


def unbind_task() -> None:
    """End a task's log context: the next lines of this process belong to no task."""
    structlog.contextvars.clear_contextvars()


@contextmanager
def bound_order(item_id: int, order_id: object) -> Iterator[None]:
    """Bind the item and order one stage call works on, for the lines of that call."""
    with structlog.contextvars.bound_contextvars(item_id=item_id, order_id=str(order_id or "")):
        yield
