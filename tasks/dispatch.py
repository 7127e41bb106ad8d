"""Publish stage chunks to the lane of their batch, over one producer connection."""

from __future__ import annotations

from collections.abc import Sequence

from celery_app import app
from pipeline.chunking import split_into_chunks
from pipeline.settings import get_settings


def stage_task_name(stage: str) -> str:
    """The Celery task name of ``stage``."""
    return f"batchline.stage.{stage}"


def send_chunks(
    stage: str,
    batch_id: str,
    item_ids: Sequence[int],
    *,
    priority: str,
    max_retries: int,
    chunk_size: int | None = None,
) -> int:
    """Split ``item_ids`` into chunks of the stage's optimal size and publish them.

    Returns the number of messages sent. The router in ``celery_app`` picks the
    lane from ``priority``.
    """
    size = chunk_size or get_settings().chunk_optimal(stage)
    chunks = split_into_chunks(item_ids, size)
    if not chunks:
        return 0
    task = app.tasks[stage_task_name(stage)]
    with app.producer_or_acquire() as producer:
        for chunk in chunks:
            task.apply_async(
                kwargs={
                    "batch_id": batch_id,
                    "item_ids": chunk,
                    "priority": priority,
                    "max_retries": max_retries,
                },
                producer=producer,
            )
    return len(chunks)
