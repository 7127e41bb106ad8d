"""Beat's entries for scheduled stages and fixed-time maintenance, built from settings.

``celery_app`` adds these to ``beat_schedule``. A daily run time becomes one
``crontab`` entry (UTC: the app's timezone), so the guide's preset is twelve
entries; the test and demo form ``every Ns+Ms`` becomes an :class:`AlignedEvery`
entry, with second resolution. Wiring only: the arithmetic is
``pipeline.schedule``'s, what an entry does is ``tasks.windows``'.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from celery.schedules import crontab, schedstate, schedule

from pipeline.schedule import SchedulePlan, StageSchedule
from pipeline.settings import Settings

OPEN_WINDOW_TASK = "batchline.maintenance.open_window"
OPEN_DUE_TASK = "batchline.maintenance.open_due_windows"
SUMMARY_TASK = "batchline.maintenance.daily_summary"


class AlignedEvery(schedule):  # type: ignore[misc]
    """Due at every multiple of ``period`` seconds since the Unix epoch, plus ``offset``.

    Celery's interval schedule counts from the last run, so two beats (or one
    restarted) would drift apart; these run times are the same for every process,
    as ``pipeline.schedule`` computes them. A new entry is not due at once: beat
    stamps it with the time it was added, after the latest run time.
    """

    def __init__(self, period: int, offset: int = 0, **kwargs: Any) -> None:
        self.period, self.offset = period, offset
        super().__init__(run_every=timedelta(seconds=period), **kwargs)

    def _latest(self, now: float) -> float:
        return math.floor((now - self.offset) / self.period) * self.period + self.offset

    def is_due(self, last_run_at: datetime) -> schedstate:
        """Due when a run time passed since ``last_run_at``; check again at the next one."""
        now = self.maybe_make_aware(self.now()).timestamp()
        latest = self._latest(now)
        next_in = max(latest + self.period - now, 0.05)
        due = self.maybe_make_aware(last_run_at).timestamp() < latest
        return schedstate(is_due=due, next=next_in)

    def __reduce__(self) -> tuple[type, tuple[int, int]]:
        return self.__class__, (self.period, self.offset)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, AlignedEvery):
            return (self.period, self.offset) == (other.period, other.offset)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.period, self.offset))

    def __repr__(self) -> str:
        return f"<AlignedEvery {self.period}s+{self.offset}s>"


def window_entries(plan: SchedulePlan, catch_up_seconds: float) -> dict[str, dict[str, Any]]:
    """Beat entries opening each scheduled stage's windows, and the catch-up for missed ones."""
    entries: dict[str, dict[str, Any]] = {}
    for stage in plan.scheduled:
        entries.update(_stage_entries(stage))
    if entries:
        entries["open-due-windows"] = {
            "task": OPEN_DUE_TASK,
            "schedule": catch_up_seconds,
            "options": {"expires": catch_up_seconds},
        }
    return entries


def _stage_entries(stage: StageSchedule) -> dict[str, dict[str, Any]]:
    # A message that waited longer than the window is pointless: the catch-up opens
    # a missed run late instead, once.
    options = {"expires": stage.window}
    if not stage.daily:
        name = f"open-window:{stage.stage}:{stage.describe()}"
        every = AlignedEvery(stage.period, stage.offsets[0])
        return {
            name: {
                "task": OPEN_WINDOW_TASK,
                "schedule": every,
                "args": (stage.stage,),
                "options": options,
            }
        }
    return {
        f"open-window:{stage.stage}@{offset // 3600:02d}:{offset % 3600 // 60:02d}": {
            "task": OPEN_WINDOW_TASK,
            "schedule": crontab(hour=offset // 3600, minute=offset % 3600 // 60),
            "args": (stage.stage,),
            "options": options,
        }
        for offset in stage.offsets
    }


def maintenance_entries(settings: Settings) -> dict[str, dict[str, Any]]:
    """Fixed-time maintenance besides the sweeper and the prune: the daily summary."""
    hour, minute = settings.batch_summary_at.split(":")
    return {
        "daily-summary": {
            "task": SUMMARY_TASK,
            "schedule": crontab(hour=int(hour), minute=int(minute)),
        }
    }


def beat_entries(settings: Settings) -> dict[str, dict[str, Any]]:
    """Every entry this module adds to ``beat_schedule``."""
    plan = settings.schedules()
    return {
        **window_entries(plan, settings.batch_sweep_interval_seconds),
        **maintenance_entries(settings),
    }
