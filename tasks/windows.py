"""Scheduled stages' windows: beat opens them, the feeder honours them, status shows them.

``batchline.maintenance.open_window(stage, run_at)`` is sent by beat at each of a
stage's run times (``celery_app``'s crontab entries). It records the run in the
ledger, once per ``(stage, run_at)`` whoever sends it, and feeds the lanes: the
feeder then sends the stage's pooled items until the window closes
(``ledger.windows.held_states``). A chunk whose message is taken after the close
gives its items back to the pool (:func:`defer_if_shut`); chunks already running
finish. ``open_due_windows`` (beat, every sweep interval) opens a run that beat
missed entirely, late and once, with a ``window_opened_late`` event.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
import structlog

from beat_schedule import OPEN_DUE_TASK, OPEN_WINDOW_TASK
from celery_app import app
from ledger.batches import add_event
from ledger.db import transaction
from ledger.pool import unqueue
from ledger.windows import Window, last_run, open_by_state, open_windows, record_window
from pipeline.chunk import ChunkMessage
from pipeline.lanes import PRIORITIES
from pipeline.schedule import StageSchedule, window_wait
from pipeline.settings import get_settings
from pipeline.stage_registry import stage_for_state, stage_named
from pipeline.status import human_duration
from tasks.feeder import feed_lanes
from tasks.infrastructure import INFRASTRUCTURE_ERRORS

log = structlog.get_logger(__name__)

#: An opening this long after its run time is flagged late (the window still closes on time).
LATE_AFTER = timedelta(seconds=60)
#: Seconds a worker's clock may lag beat's when it opens "the latest run" (capped at a
#: quarter of the period for the test form's short periods).
MAX_CLOCK_SKEW = 5.0
#: What a feed after opening may meet; the next sweep feeds in its place.
FEED_ERRORS: tuple[type[BaseException], ...] = (redis.RedisError, *INFRASTRUCTURE_ERRORS)


def plan_window(schedule: StageSchedule, run_at: datetime, now: datetime) -> Window:
    """The window of run ``run_at`` opened at ``now``.

    Within the run's own window it closes on schedule (a late beat shortens it); a
    run whose window had passed entirely opens now for a full window instead.
    """
    length = timedelta(seconds=schedule.window)
    if now < run_at + length:
        return Window(schedule.stage, run_at, run_at, run_at + length, now - run_at > LATE_AFTER)
    return Window(schedule.stage, run_at, now, now + length, True)


def open_window(
    stage: str, run_at: str | None = None, now: datetime | None = None
) -> dict[str, Any]:
    """Open ``stage``'s run ``run_at`` (ISO time; default: its latest run) once.

    Returns ``{"opened": bool, ...}``: False when the run was opened before or the
    stage is continuous.

    Raises:
        ValueError: ``run_at`` is not one of the stage's run times (names the field).
        UnknownStage: no stage is called ``stage``.
    """
    stage_named(stage)
    moment = now or datetime.now(UTC)
    schedule = get_settings().schedules().of(stage)
    if schedule.continuous:
        log.warning("window.continuous_stage", stage=stage)
        return {"opened": False, "stage": stage, "reason": "continuous"}
    run = _run_time(schedule, run_at, moment)
    window = plan_window(schedule, run, moment)
    with transaction() as session:
        opened = record_window(session, window, opened_by=_who())
        if opened:
            kind = "window_opened_late" if window.opens_at > run else "window_opened"
            data = {**window.as_dict(), "delay_seconds": round((moment - run).total_seconds(), 1)}
            add_event(session, batch_id=None, kind=kind, data=data)
    if opened:
        log.info("window.opened", **window.as_dict())
        _feed()
    return {"opened": opened, **window.as_dict()}


def _run_time(schedule: StageSchedule, run_at: str | None, now: datetime) -> datetime:
    if run_at is None:
        # Beat sent this at a run time; a worker whose clock is a little behind beat's
        # must still take it for that run, not the one before.
        skew = timedelta(seconds=min(MAX_CLOCK_SKEW, schedule.period / 4))
        latest = schedule.latest_run(now + skew)
        assert latest is not None  # a scheduled stage always has a latest run
        return latest
    try:
        moment = datetime.fromisoformat(run_at)
    except ValueError:
        raise ValueError(f"run_at: {run_at!r} is not an ISO date-time") from None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if not schedule.is_run_time(moment):
        raise ValueError(
            f"run_at: {run_at} is not a run time of {schedule.stage} ({schedule.describe()})"
        )
    return moment


def open_due_windows(now: datetime | None = None) -> list[dict[str, Any]]:
    """Open each scheduled stage's latest run if beat missed it (late, at most once).

    Only a stage that has run before is caught up: turning a schedule on waits
    for its next run time instead of opening one at once.
    """
    moment = now or datetime.now(UTC)
    opened = []
    for schedule in get_settings().schedules().scheduled:
        latest = schedule.latest_run(moment)
        if latest is None or not _missed(schedule, latest):
            continue
        opened.append(open_window(schedule.stage, latest.isoformat(), now=moment))
    return opened


def _missed(schedule: StageSchedule, run: datetime) -> bool:
    with transaction() as session:
        last = last_run(session, schedule.stage)
    # Never run (a schedule just turned on): wait for its next run time instead.
    return last is not None and last < run


def _who() -> str:
    return f"{socket.gethostname()}/{os.getpid()}"


def _feed(lanes: Sequence[str] = PRIORITIES) -> None:
    try:
        feed_lanes(lanes)
    except FEED_ERRORS as error:
        # The window is recorded: the next sweep feeds.
        log.warning("feeder.unavailable", error=str(error))


def defer_if_shut(message: ChunkMessage) -> bool:
    """Give a chunk's items back to the pool if its stage's window closed; True if so.

    The stage task asks this for a chunk's first delivery only: a retry or a
    redelivered chunk started inside the window, and a running chunk finishes.
    """
    plan = get_settings().schedules()
    if not plan.gates(message.stage, message.priority):
        return False
    with transaction() as session:
        if message.stage in {w.stage for w in open_windows(session)}:
            return False
        states = [s.value for s in stage_named(message.stage).entry_states]
        unqueue(session, message.item_ids, states)
    log.info(
        "window.deferred",
        stage=message.stage,
        batch_id=message.batch_id,
        items=len(message.item_ids),
    )
    # The message's place in the lane is free: other work may take it now, not at the next sweep.
    _feed((message.priority,))
    return True


def schedule_status(batch_id: str, now: datetime | None = None) -> dict[str, Any]:
    """Per scheduled stage, the batch's orders waiting and the window they wait for.

    Returns ``{"waiting_for_window": {stage: {...}}, "window_wait_seconds": s}``;
    empty when no stage is scheduled.
    """
    plan = get_settings().schedules()
    if not plan.scheduled:
        return {"waiting_for_window": {}, "window_wait_seconds": 0.0}
    moment = now or datetime.now(UTC)
    with transaction() as session:
        opened = {w.stage: w for w in open_windows(session)}
        counts = open_by_state(session, lanes=sorted(plan.lanes), batch_id=batch_id)
    pooled = {state: n for state, (n, _) in counts.items()}
    waiting = {
        sch.stage: _stage_wait(sch, pooled, opened.get(sch.stage), moment) for sch in plan.scheduled
    }
    # Every open order of a scheduled lane still has the windows ahead of its stage to pass.
    ahead = {stage_for_state(state).name for state in counts}
    return {
        "waiting_for_window": waiting,
        "window_wait_seconds": round(window_wait(plan, ahead, moment, set(opened)), 1),
    }


def _stage_wait(
    schedule: StageSchedule, pooled: dict[str, int], window: Window | None, now: datetime
) -> dict[str, Any]:
    orders = sum(pooled.get(s.value, 0) for s in stage_named(schedule.stage).entry_states)
    following = schedule.next_run(now)
    return {
        "orders": orders,
        "window_open_until": window.closes_at.isoformat() if window else None,
        "next_window": following.isoformat() if following else None,
    }


def with_schedule(status: dict[str, Any], *, finished: bool = False) -> dict[str, Any]:
    """``status`` with the schedule's waits, its ETA counting the wait for windows."""
    if finished:
        return {**status, "waiting_for_window": {}, "window_wait_seconds": 0.0}
    fields = schedule_status(status["batch_id"])
    eta = status.get("estimated_time_remaining")
    wait = fields["window_wait_seconds"]
    if wait and (eta is None or eta < wait):
        # The orders cannot be done before the windows they wait for have opened.
        status = {**status, "estimated_time_remaining": wait, "eta_human": human_duration(wait)}
    return {**status, **fields}


@app.task(name=OPEN_WINDOW_TASK, ignore_result=True)
def open_window_task(stage: str, run_at: str | None = None) -> dict[str, Any]:
    """Open ``stage``'s run (beat sends this at each run time; a repeat opens nothing)."""
    return open_window(stage, run_at)


@app.task(name=OPEN_DUE_TASK, ignore_result=True)
def open_due_windows_task() -> list[dict[str, Any]]:
    """Open runs beat missed (beat sends this every sweep interval)."""
    return open_due_windows()
