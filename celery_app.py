r"""The Celery app: configuration, queues, routes and the beat schedule. Wiring only.

Run a worker with ``batchline worker``, or as Celery's docs say, with every queue
a deployment needs (housekeeping and status answers first, then the operators'
recovery requests, then the lanes best first)::

    celery -A celery_app worker \
        -Q batch.maintenance,batch.recovery,batch.high,batch.normal,batch.low

A plain ``celery -A celery_app worker`` (no ``-Q``) consumes the same queues in
the same order: they are declared in it.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.apps import worker as celery_worker_module
from celery.schedules import crontab
from celery.signals import (
    before_task_publish,
    celeryd_init,
    setup_logging,
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_init,
)
from kombu import pools as kombu_pools
from kombu.entity import Queue

from beat_schedule import beat_entries
from metrics.logs import configure_logging, route_stdlib_logging, say_as_json
from metrics.task_context import bind_task, unbind_task
from pipeline.chunk import ChunkMessage, chunk_kwargsrepr
from pipeline.lanes import PRIORITIES
from pipeline.settings import Settings, get_settings
from pipeline.stage_registry import STAGES

LANES: dict[str, str] = {priority: f"batch.{priority}" for priority in PRIORITIES}
#: Each lane's queue for stages that wait on outside services (``Stage.io_bound``:
#: writing, delivery). Apart, so a threads-pool worker can keep those calls going
#: while the prefork processes do the CPU-bound stages (``batchline worker``).
IO_LANES: dict[str, str] = {priority: f"{queue}.io" for priority, queue in LANES.items()}
RECOVERY_QUEUE = "batch.recovery"
MAINTENANCE_QUEUE = "batch.maintenance"
# Quick questions a caller waits on: answered from the queue every worker polls first.
# start_batch only asks the feeder to top up a lane: it must not take a lane slot itself.
ANSWERING_TASKS = {"batchline.get_batch_status", "batchline.start_batch"}
#: Celery task name -> the stage it runs.
STAGE_OF_TASK = {stage.task_name: stage.name for stage in STAGES}
#: Celery task names of the stages whose chunks go to a lane's I/O queue.
IO_TASKS = {stage.task_name for stage in STAGES if stage.io_bound}


def lane_queues(priority: str) -> tuple[str, str]:
    """The lane's two queues: CPU-bound stages', then I/O-bound stages'."""
    return LANES[priority], IO_LANES[priority]


def route_task(name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any) -> Any:
    """Send every stage task to the lane of its batch's priority (``priority`` kwarg).

    Within the lane, I/O-bound stages (writing, delivery) have their own queue.
    """
    if name in STAGE_OF_TASK:
        message = ChunkMessage.from_task(STAGE_OF_TASK[name], dict(kwargs or {}))
        lanes = IO_LANES if name in IO_TASKS else LANES
        return {"queue": lanes[message.priority]}
    if name.startswith("batchline.recovery."):
        return {"queue": RECOVERY_QUEUE}
    if name.startswith("batchline.maintenance.") or name in ANSWERING_TASKS:
        return {"queue": MAINTENANCE_QUEUE}
    return None


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings derived from batchline's settings."""
    broker = settings.redis_url or "redis://localhost:6379/0"
    return dict(
        broker_url=broker,
        result_backend=broker,
        # JSON only between processes: nothing executable travels in a message.
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        # Declared maintenance -> recovery -> high -> normal -> low (each lane's CPU queue,
        # then its I/O queue): with the 'priority' cycle a worker polls its queues in
        # this order (kombu 5.7 keeps active_queues ordered), so sweeps and status
        # answers never wait behind a lane's backlog, even in a worker without -Q.
        # Each queue bound with its own routing key, so no message can fan out into
        # several lanes through a shared default binding.
        task_queues=[
            Queue(name, routing_key=name)
            for name in (MAINTENANCE_QUEUE, RECOVERY_QUEUE, *_lane_queues_in_order())
        ],
        task_default_queue=LANES["normal"],
        task_routes=(route_task,),
        broker_transport_options={
            "queue_order_strategy": "priority",
            # Above the hard time limit, or a long chunk is handed out twice.
            "visibility_timeout": settings.batch_visibility_timeout,
        },
        # Late acks + prefetch 1: a crash redelivers the chunk, and a worker never
        # sits on low work it fetched ahead while high work waits.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=settings.batch_task_soft_time_limit,
        task_time_limit=settings.batch_task_time_limit,
        # 0 is "never" here, None to Celery: see bench/recycling.py for what a
        # replacement costs the message fetched while it happens.
        worker_max_tasks_per_child=settings.celery_worker_max_tasks_per_child or None,
        worker_max_memory_per_child=settings.celery_worker_max_memory_per_child,
        # Results nobody reads cost memory and pub/sub traffic; tasks that answer
        # callers (get_batch_status) opt back in.
        task_ignore_result=True,
        result_expires=3600,
        broker_connection_retry_on_startup=True,
        # Keep running chunks alive when the broker connection drops: cancelling one
        # sends SIGTERM mid-transaction, and a rerun is harmless anyway (the ledger).
        worker_cancel_long_running_tasks_on_connection_loss=False,
        # Task events on by default: Flower, started as its docs say, shows every
        # chunk (its batch, stage and lane) without workers needing --events.
        worker_send_task_events=True,
        # A chunk shows in Flower from the moment it is queued, not when a worker takes it.
        task_send_sent_event=True,
        enable_utc=True,
        timezone="UTC",
        beat_schedule={
            "sweep": {
                "task": "batchline.maintenance.sweep",
                "schedule": settings.batch_sweep_interval_seconds,
                # A sweep nobody ran in time is replaced by the next one, not queued up.
                "options": {"expires": settings.batch_sweep_interval_seconds},
            },
            # Retention once a day at BATCH_PRUNE_AT (UTC: the app's timezone).
            "prune": {
                "task": "batchline.maintenance.prune",
                "schedule": _daily_at(settings.batch_prune_at),
            },
            # Single orders due by age when no intake process runs (tasks.intake).
            "flush-intake": {
                "task": "batchline.maintenance.flush_intake",
                "schedule": settings.intake_flush_interval_seconds,
                "options": {"expires": settings.intake_flush_interval_seconds},
            },
            # Scheduled stages' windows and the daily summary (docs/schedules.md).
            **beat_entries(settings),
        },
    )


def _lane_queues_in_order() -> list[str]:
    return [queue for priority in PRIORITIES for queue in lane_queues(priority)]


def _daily_at(hh_mm: str) -> crontab:
    hour, minute = hh_mm.split(":")
    return crontab(hour=int(hour), minute=int(minute))


def reconfigure() -> None:
    """Re-read settings into the app, after a launcher exported new service URLs.

    Cached broker and result-backend connections point at the old servers, so
    they are dropped the way Celery drops them after a fork (it has no public
    call for this). kombu keeps its connection and producer pools in global
    groups keyed by broker URL: closing only the app's pool left the producer
    pool of the same URL holding it, closed, and the next publish on an unchanged
    ``REDIS_URL`` failed with "Acquire on closed pool"; ``pools.reset`` closes
    and forgets them all.
    """
    app.conf.update(celery_config(get_settings()))
    kombu_pools.reset()
    app._after_fork()
    app._backend_cache = None
    app._local.__dict__.pop("backend", None)


app = Celery(
    "batchline",
    include=["tasks", "recovery.tasks"],
)
app.conf.update(celery_config(get_settings()))


@worker_init.connect
def _worker_start(**_: Any) -> None:
    # Only worker processes log at LOG_LEVEL; importing the app (CLI, tests) changes nothing.
    configure_logging(get_settings().log_level, get_settings().log_format)
    from tasks.handlers import warm_up

    warm_up()


@celeryd_init.connect
def _structured_from_the_start(instance: Any = None, **_: Any) -> None:
    # Before Celery's first words (the root warning comes before its logging set-up):
    # warnings become log lines, and the text banner is left out of a JSON stream.
    route_stdlib_logging(getattr(instance, "loglevel", None) or "WARNING", _log_format())
    logging.captureWarnings(True)
    if instance is not None and _log_format() == "json":
        instance.quiet = True
        # Celery prints its shutdown notices with celery.apps.worker.safe_say: as JSON.
        celery_worker_module.safe_say = say_as_json


def _log_format() -> str:
    return get_settings().log_format


@setup_logging.connect
def _route_celery_logging(loglevel: int | str | None = None, **_: Any) -> None:
    # Connected, so Celery installs no handlers of its own (nor redirects stdout):
    # its lines and kombu's are rendered like batchline's, JSON with LOG_FORMAT=json.
    route_stdlib_logging(loglevel or "WARNING", _log_format())


@task_prerun.connect
def _bind_task_ids(task_id: str = "", task: Any = None, kwargs: Any = None, **_: Any) -> None:
    # Every line a task logs (and Celery logs about it) carries its task and batch ids.
    bind_task(task_id, getattr(task, "name", ""), kwargs)


@task_postrun.connect
def _unbind_task_ids(**_: Any) -> None:
    unbind_task()


@before_task_publish.connect
def _short_chunk_kwargsrepr(
    sender: str | None = None, headers: Any = None, body: Any = None, **_: Any
) -> None:
    # Retries (Celery's autoretry too) re-send a chunk's kwargs: Flower and the
    # "received" log line show batch, stage, lane and size, not thousands of item ids.
    if sender in STAGE_OF_TASK and isinstance(headers, dict) and isinstance(body, tuple | list):
        shown = chunk_kwargsrepr(STAGE_OF_TASK[sender], body[1] if len(body) > 1 else None)
        if shown is not None:
            headers["kwargsrepr"] = shown


@worker_process_init.connect
def _fresh_connections_after_fork(**_: Any) -> None:
    # A forked pool process must not share the parent's sockets or pool.
    from ledger.db import dispose_engine
    from metrics.redis_client import reset_redis_client

    dispose_engine()
    reset_redis_client()
