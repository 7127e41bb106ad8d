"""The Celery wiring: queue order, and routes built from the chunk message."""

from __future__ import annotations

import pytest

from celery_app import (
    IO_LANES,
    LANES,
    MAINTENANCE_QUEUE,
    RECOVERY_QUEUE,
    app,
    celery_config,
    route_task,
)
from cli.workers import ALL_LANES, queues_for
from pipeline.chunk import InvalidChunkMessage
from pipeline.settings import Settings
from pipeline.stage_registry import STAGES


def test_a_worker_without_q_polls_housekeeping_first_then_the_lanes_best_first() -> None:
    # A plain `celery -A celery_app worker` consumes the declared queues in this order.
    # Each lane's CPU-bound stages' queue, then its I/O-bound stages' queue.
    lanes = [queue for lane in LANES for queue in (LANES[lane], IO_LANES[lane])]
    assert list(app.amqp.queues) == [MAINTENANCE_QUEUE, RECOVERY_QUEUE, *lanes]


def test_batchline_worker_polls_in_the_declared_order() -> None:
    assert queues_for(ALL_LANES).split(",") == list(app.amqp.queues)


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
@pytest.mark.parametrize("lane", list(LANES))
def test_a_stage_chunk_goes_to_its_lane(stage, lane: str) -> None:
    kwargs = {"batch_id": "b", "item_ids": [1], "priority": lane, "max_retries": 3}
    queue = (IO_LANES if stage.io_bound else LANES)[lane]
    assert route_task(stage.task_name, (), kwargs, {}) == {"queue": queue}


def test_a_malformed_chunk_message_is_refused_before_it_is_published() -> None:
    with pytest.raises(InvalidChunkMessage, match="priority"):
        route_task(STAGES[0].task_name, (), {"batch_id": "b", "item_ids": [1], "priority": "x"}, {})


@pytest.mark.parametrize("name", ["batchline.get_batch_status", "batchline.maintenance.sweep"])
def test_quick_answers_and_housekeeping_go_to_maintenance(name: str) -> None:
    assert route_task(name, (), {}, {}) == {"queue": MAINTENANCE_QUEUE}


@pytest.mark.parametrize(("configured", "celery_sees"), [(0, None), (1, 1), (50, 50)])
def test_max_tasks_per_child_0_means_a_process_is_never_replaced_for_its_count(
    configured: int, celery_sees: int | None
) -> None:
    settings = Settings(celery_worker_max_tasks_per_child=configured)
    assert celery_config(settings)["worker_max_tasks_per_child"] == celery_sees


def test_by_default_processes_are_replaced_for_memory_only() -> None:
    # A replacement strands the message fetched meanwhile (bench/recycling.py).
    assert app.conf.worker_max_tasks_per_child is None
    assert app.conf.worker_max_memory_per_child == 400_000
