"""Scheduled stages' windows in the ledger, and the orders that wait for them.

A row of ``schedule_windows`` is one opened run of a stage; its unique
``(stage, run_at)`` is what makes opening idempotent. The caller owns the
transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from ledger.models import ScheduleWindow
from pipeline.schedule import SchedulePlan
from pipeline.stage_registry import stage_named
from pipeline.states import open_sql, pooled_sql


@dataclass(frozen=True)
class Window:
    """One opened run: the feeder sends the stage's items while it is open."""

    stage: str
    run_at: datetime
    opens_at: datetime
    closes_at: datetime
    late: bool

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form (status, CLI, events)."""
        return {
            "stage": self.stage,
            "run_at": self.run_at.isoformat(),
            "opens_at": self.opens_at.isoformat(),
            "closes_at": self.closes_at.isoformat(),
            "late": self.late,
        }


def record_window(session: Session, window: Window, *, opened_by: str) -> bool:
    """Insert ``window`` unless its run was opened already; return whether this call did."""
    statement = (
        insert(ScheduleWindow)
        .values(
            stage=window.stage,
            run_at=window.run_at,
            opens_at=window.opens_at,
            closes_at=window.closes_at,
            late=window.late,
            opened_by=opened_by,
        )
        .on_conflict_do_nothing(constraint="uq_schedule_windows_stage_run")
        .returning(ScheduleWindow.id)
    )
    return session.scalar(statement) is not None


def last_run(session: Session, stage: str) -> datetime | None:
    """The latest run of ``stage`` that was opened (None: never)."""
    query = select(func.max(ScheduleWindow.run_at)).where(ScheduleWindow.stage == stage)
    return session.scalar(query)


def open_windows(session: Session) -> list[Window]:
    """Every window open now (by the database's clock), in stage then run order."""
    query = (
        select(ScheduleWindow)
        .where(ScheduleWindow.opens_at <= text("now()"), ScheduleWindow.closes_at > text("now()"))
        .order_by(ScheduleWindow.stage, ScheduleWindow.run_at)
    )
    return [_window(row) for row in session.scalars(query)]


def held_states(session: Session, plan: SchedulePlan, lane: str) -> list[str]:
    """States whose pooled items of ``lane`` must wait: their scheduled stage's window is shut.

    Costs nothing (no query) when no stage is scheduled for the lane.
    """
    gated = [s.stage for s in plan.scheduled if plan.gates(s.stage, lane)]
    if not gated:
        return []
    opened = {window.stage for window in open_windows(session)}
    return sorted(
        state.value
        for stage in gated
        if stage not in opened
        for state in stage_named(stage).entry_states
    )


def _window(row: ScheduleWindow) -> Window:
    return Window(row.stage, row.run_at, row.opens_at, row.closes_at, row.late)


_BY_STATE = text(
    f"""
    SELECT i.state, count(*) FILTER (WHERE {pooled_sql("i.")}), count(*)
    FROM items i JOIN batches b ON b.id = i.batch_id
    WHERE b.status = 'RUNNING' AND (:batch_id = '' OR i.batch_id = :batch_id)
      AND i.lane = ANY(:lanes) AND {open_sql("i.state")}
    GROUP BY i.state
    """
)


def open_by_state(
    session: Session, *, lanes: Sequence[str], batch_id: str = ""
) -> dict[str, tuple[int, int]]:
    """Open items of running batches (or one batch) in ``lanes``: state -> (pooled, all)."""
    params = {"batch_id": batch_id, "lanes": list(lanes)}
    return {
        str(state): (int(pooled), int(total))
        for state, pooled, total in session.execute(_BY_STATE, params)
    }
