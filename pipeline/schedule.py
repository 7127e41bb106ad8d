"""Fixed run times per stage: parsing, the guide's preset, next-run and window arithmetic.

A stage is either ``continuous`` (its items are fed as soon as they reach it) or
*scheduled*: its items wait in the pool until a window opens at one of its run
times, and the feeder sends them only while that window lasts. Run times are
always UTC and repeat with a period: a day for ``08:00,14:00,20:00`` (the guide's
form), or ``N`` seconds for the test and demo form ``every 20s+5s`` (runs at
every multiple of 20 s since the Unix epoch, plus 5 s). Both are aligned to the
epoch, never to a process's start, so every beat and every worker computes the
same run times: a run is identified by ``(stage, run_at)`` and opens once.

Pure: no Celery, Redis or SQL here (``tasks.windows`` and ``ledger.windows`` use it).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Final

from pipeline.lanes import PRIORITIES
from pipeline.stage_registry import STAGE_NAMES, STAGES, stage_named

DAY: Final = 86_400
CONTINUOUS: Final = "continuous"
#: ``BATCH_SCHEDULE_PRESET=guide``: the guide's "Optimal körningstider" (UTC).
GUIDE_TIMES: Final[dict[str, str]] = {
    "preflight": "08:00,14:00,20:00",
    "writing": "09:00,15:00,21:00",
    "qc": "11:00,17:00,23:00",
    "delivery": "12:00,18:00,00:00",
}
PRESETS: Final[dict[str, dict[str, str]]] = {"guide": GUIDE_TIMES}
#: Lanes a schedule applies to by default: high work passes scheduled stages at once.
DEFAULT_LANES: Final = "normal,low"

_DAILY = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_EVERY = re.compile(r"^every\s+(\d+)s(?:\s*\+\s*(\d+)s)?$")
_DURATION = re.compile(r"^(\d+)\s*(s|m|h)?$")
_UNIT_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, None: 1}


class ScheduleError(ValueError):
    """A schedule setting holds a value batchline cannot use; the message names it."""


@dataclass(frozen=True)
class StageSchedule:
    """When one stage runs: at ``offsets`` seconds into every ``period`` (0: continuous)."""

    stage: str
    period: int
    offsets: tuple[int, ...]
    #: seconds a run may start new chunks after its run time
    window: int

    @property
    def continuous(self) -> bool:
        """Whether the stage runs whenever it has work (no windows)."""
        return self.period == 0

    @property
    def daily(self) -> bool:
        """Whether the run times are times of day (the crontab form)."""
        return self.period == DAY

    def latest_run(self, now: datetime) -> datetime | None:
        """The last run time at or before ``now`` (None for a continuous stage)."""
        runs = [r for r in self._runs_near(now) if r <= _seconds(now)]
        return _moment(max(runs)) if runs else None

    def next_run(self, now: datetime) -> datetime | None:
        """The first run time strictly after ``now`` (None for a continuous stage)."""
        runs = [r for r in self._runs_near(now) if r > _seconds(now)]
        return _moment(min(runs)) if runs else None

    def next_runs(self, now: datetime, count: int) -> list[datetime]:
        """The next ``count`` run times after ``now``."""
        found: list[datetime] = []
        moment = now
        while len(found) < count and (following := self.next_run(moment)) is not None:
            found.append(following)
            moment = following
        return found

    def open_run(self, now: datetime) -> datetime | None:
        """The run whose window is open at ``now`` by the clock, if any."""
        latest = self.latest_run(now)
        if latest is None or now >= latest + timedelta(seconds=self.window):
            return None
        return latest

    def is_run_time(self, moment: datetime) -> bool:
        """Whether ``moment`` is exactly one of the stage's run times."""
        return not self.continuous and self.latest_run(moment) == moment

    def _runs_near(self, now: datetime) -> list[int]:
        if self.continuous:
            return []
        base = math.floor(_seconds(now) / self.period) * self.period
        return [base + k * self.period + o for k in (-1, 0, 1) for o in self.offsets]

    def describe(self) -> str:
        """The schedule as an operator writes it (``08:00,14:00`` or ``every 20s+5s``)."""
        if self.continuous:
            return CONTINUOUS
        if self.daily:
            return ",".join(f"{o // 3600:02d}:{o % 3600 // 60:02d}" for o in self.offsets)
        return f"every {self.period}s+{self.offsets[0]}s"


@dataclass(frozen=True)
class SchedulePlan:
    """Every stage's schedule and the lanes schedules apply to."""

    stages: tuple[StageSchedule, ...]
    lanes: frozenset[str]

    def of(self, stage: str) -> StageSchedule:
        """The schedule of ``stage``."""
        return next(s for s in self.stages if s.stage == stage)

    @property
    def scheduled(self) -> tuple[StageSchedule, ...]:
        """The stages that run in windows, in stage order."""
        return tuple(s for s in self.stages if not s.continuous)

    def gates(self, stage: str, lane: str) -> bool:
        """Whether ``stage``'s items in ``lane`` wait for a window."""
        return lane in self.lanes and not self.of(stage).continuous


def schedule_variable(stage: str, suffix: str = "") -> str:
    """The environment variable of ``stage``'s schedule (``BATCH_SCHEDULE_WRITING``)."""
    return f"BATCH_SCHEDULE_{stage.upper()}{suffix}"


def parse_plan(
    specs: Mapping[str, str], windows: Mapping[str, str], *, preset: str, lanes: str
) -> SchedulePlan:
    """Build the plan from the settings' raw values (stage -> text).

    An empty stage value means the preset's times, or ``continuous`` without one;
    an empty window means the stage's guide time limit (``Stage.scheduled_time_limit``).

    Raises:
        ScheduleError: a value is invalid; the message names the variable.
    """
    if preset and preset not in PRESETS:
        raise ScheduleError(f"BATCH_SCHEDULE_PRESET must be one of {', '.join(PRESETS)} or empty")
    defaults = PRESETS.get(preset, {})
    stages = tuple(
        parse_stage(
            name,
            specs.get(name, "").strip() or defaults.get(name, CONTINUOUS),
            windows.get(name, "").strip(),
        )
        for name in STAGE_NAMES
    )
    return SchedulePlan(stages, parse_lanes(lanes))


def parse_stage(stage: str, spec: str, window: str) -> StageSchedule:
    """One stage's schedule from its ``BATCH_SCHEDULE_<STAGE>`` and ``..._WINDOW`` values.

    Raises:
        ScheduleError: invalid times, a window longer than the gap between runs.
    """
    name = schedule_variable(stage)
    if spec.lower() == CONTINUOUS:
        return StageSchedule(stage, 0, (), 0)
    period, offsets = _parse_times(name, spec)
    seconds = (
        parse_duration(f"{name}_WINDOW", window)
        if window
        else stage_named(stage).scheduled_time_limit
    )
    gap = min_gap(period, offsets)
    if seconds > gap:
        raise ScheduleError(
            f"{name}_WINDOW is {seconds} s but runs of {name}={spec!r} are only {gap} s apart:"
            " a window must close before the next run opens"
        )
    return StageSchedule(stage, period, offsets, seconds)


def _parse_times(name: str, spec: str) -> tuple[int, tuple[int, ...]]:
    every = _EVERY.match(spec.strip().lower())
    if every:
        period, offset = int(every.group(1)), int(every.group(2) or 0)
        if not 1 <= period <= DAY or offset >= period:
            raise ScheduleError(f"{name}: need 1 <= N <= 86400 and offset < N in {spec!r}")
        return period, (offset,)
    offsets = []
    for part in (p.strip() for p in spec.split(",")):
        match = _DAILY.match(part)
        if not match:
            raise ScheduleError(
                f"{name}: {part!r} is not a UTC time HH:MM; write {CONTINUOUS!r},"
                " a list like '08:00,14:00,20:00' or 'every 20s+5s'"
            )
        offsets.append(int(match.group(1)) * 3600 + int(match.group(2)) * 60)
    if len(set(offsets)) != len(offsets):
        raise ScheduleError(f"{name}: {spec!r} names a time twice")
    return DAY, tuple(sorted(offsets))


def parse_duration(name: str, text: str) -> int:
    """Seconds in ``30m``, ``2h``, ``45s`` or ``90`` (seconds).

    Raises:
        ScheduleError: not a positive duration.
    """
    match = _DURATION.match(text.strip().lower())
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)] if match else 0
    if seconds <= 0:
        raise ScheduleError(f"{name}: {text!r} is not a duration like 30m, 2h or 45s")
    return seconds


def parse_lanes(text: str) -> frozenset[str]:
    """``BATCH_SCHEDULE_LANES`` as a set of lane names.

    Raises:
        ScheduleError: empty, or a name that is not a lane.
    """
    lanes = frozenset(part.strip() for part in text.split(",") if part.strip())
    unknown = lanes - set(PRIORITIES)
    if not lanes or unknown:
        raise ScheduleError(
            f"BATCH_SCHEDULE_LANES must name lanes among {', '.join(PRIORITIES)}; got {text!r}"
        )
    return lanes


def unknown_schedule_variables(names: Iterable[str]) -> list[str]:
    """Those of ``names`` that look like a schedule setting but name no stage."""
    known = {"BATCH_SCHEDULE_PRESET", "BATCH_SCHEDULE_LANES"}
    for stage in STAGE_NAMES:
        known |= {schedule_variable(stage), schedule_variable(stage, "_WINDOW")}
    return sorted(
        n for n in names if n.upper().startswith("BATCH_SCHEDULE_") and n.upper() not in known
    )


def min_gap(period: int, offsets: Sequence[int]) -> int:
    """The shortest time between two consecutive runs (across the period's end too)."""
    ordered = sorted(offsets)
    gaps = [b - a for a, b in pairwise(ordered)]
    return min([*gaps, period - ordered[-1] + ordered[0]])


def stage_time_limits(schedule: StageSchedule, soft: int, hard: int) -> tuple[int, int]:
    """A stage task's (soft, hard) time limits in seconds.

    A chunk of a scheduled stage may run as long as its run's window, which is
    the guide's limit for a run by default (``Stage.scheduled_time_limit``:
    30 min, 2 h, 1 h, 30 min); the soft limit comes a tenth earlier, as 540 does
    before 600. A continuous stage, or a window shorter than ``hard``, keeps
    ``soft``/``hard`` (``BATCH_TASK_SOFT_TIME_LIMIT``/``BATCH_TASK_TIME_LIMIT``).
    """
    if schedule.continuous or schedule.window <= hard:
        return soft, hard
    return schedule.window - max(1, schedule.window // 10), schedule.window


def window_wait(
    plan: SchedulePlan, open_stages: Iterable[str], now: datetime, opened: Iterable[str] = ()
) -> float:
    """Seconds before orders now in ``open_stages`` can have passed every window ahead.

    An order in stage ``s`` still has to pass each scheduled stage from ``s`` on;
    walking them in order, a stage whose window is closed at that moment adds the
    wait until its next run. The processing itself is not counted (the throughput
    estimate covers it), so this is a lower bound on the time left. ``opened``: stages
    whose window the ledger holds open right now (a late window outlives the clock's).
    """
    names = [s.name for s in STAGES]
    present = set(open_stages)
    if not present:
        return 0.0
    first = min(names.index(s) for s in present)
    moment, open_now = now, set(opened)
    for schedule in plan.stages[first:]:
        if schedule.continuous or schedule.open_run(moment) is not None:
            continue
        if moment == now and schedule.stage in open_now:
            continue
        following = schedule.next_run(moment)
        if following is not None:
            moment = following
    return (moment - now).total_seconds()


def _seconds(moment: datetime) -> float:
    return moment.timestamp()


def _moment(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)
