"""``batchline schedule``: every stage's mode, its next run times and the open windows."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from pipeline.schedule import StageSchedule, schedule_variable
from pipeline.settings import get_settings
from pipeline.stage_registry import STAGE_NAMES

console = Console()
#: Run times listed per scheduled stage.
NEXT_RUNS = 3


def schedule_report(now: datetime | None = None) -> dict[str, Any]:
    """Modes, windows, next runs and open windows (from the ledger) as a JSON-ready dict."""
    moment = now or datetime.now(UTC)
    plan = get_settings().schedules()
    opened = _open_windows()
    return {
        "now": moment.isoformat(),
        "lanes": sorted(plan.lanes),
        "stages": [_stage(s, moment, opened) for s in plan.stages],
        "open_windows": [w for ws in opened.values() for w in ws],
    }


def _stage(schedule: StageSchedule, now: datetime, opened: dict[str, list[Any]]) -> dict[str, Any]:
    return {
        "stage": schedule.stage,
        "mode": "continuous" if schedule.continuous else "scheduled",
        "run_times": schedule.describe(),
        "window_seconds": schedule.window or None,
        "next_runs": [r.isoformat() for r in schedule.next_runs(now, NEXT_RUNS)],
        "open_window": (opened.get(schedule.stage) or [None])[0],
    }


def _open_windows() -> dict[str, list[dict[str, object]]]:
    from ledger.db import transaction
    from ledger.windows import open_windows

    found: dict[str, list[dict[str, object]]] = {}
    with transaction() as session:
        for window in open_windows(session):
            found.setdefault(window.stage, []).append(window.as_dict())
    return found


def schedule_table(report: dict[str, Any]) -> Table:
    """The report as a table, one row per stage."""
    table = Table(title=f"schedules (UTC; lanes {','.join(report['lanes'])})")
    for column in ("stage", "mode", "run times", "window", "next runs", "open now"):
        table.add_column(column)
    for stage in report["stages"]:
        window = stage["open_window"]
        table.add_row(
            stage["stage"],
            stage["mode"],
            stage["run_times"],
            f"{stage['window_seconds']} s" if stage["window_seconds"] else "-",
            " ".join(_clock(r) for r in stage["next_runs"]) or "-",
            f"until {_clock(window['closes_at'])}" if window else "-",
        )
    return table


def window_rows(status: dict[str, Any]) -> list[tuple[str, str]]:
    """``batchline status`` rows: per scheduled stage, orders waiting and for which window."""
    rows = []
    for stage, wait in (status.get("waiting_for_window") or {}).items():
        if wait["window_open_until"]:
            when = f"window open until {_clock(wait['window_open_until'])}"
        else:
            when = f"next window {_clock(wait['next_window'])}"
        rows.append((f"{stage} waits", f"{wait['orders']} orders; {when}"))
    return rows


def window_note(status: dict[str, Any]) -> str:
    """A progress bar's suffix: the orders waiting per closed window (empty: none wait)."""
    waits = [
        f"{stage} {wait['orders']} @{_clock(wait['next_window'])[-8:]}"
        for stage, wait in (status.get("waiting_for_window") or {}).items()
        if wait["orders"] and not wait["window_open_until"]
    ]
    return f"waiting for window: {', '.join(waits)}" if waits else ""


#: ``batchline demo --scheduled``: every stage runs every PERIOD s for WINDOW s.
DEMO_PERIOD, DEMO_WINDOW = 10, 6
#: The stages' first runs, seconds after the demo starts (staggered, in stage order).
DEMO_FIRST_RUNS = (3, 5, 7, 9)


def compressed_schedule(start: float) -> dict[str, str]:
    """Schedule settings that run each stage every few seconds from ``start`` (epoch seconds).

    The test form ``every Ns+Ms`` is aligned to the epoch, so the offsets are
    chosen to put each stage's first run a few seconds after ``start``.
    """
    env = {}
    for stage, first in zip(STAGE_NAMES, DEMO_FIRST_RUNS, strict=True):
        offset = (int(start) + first) % DEMO_PERIOD
        env[schedule_variable(stage)] = f"every {DEMO_PERIOD}s+{offset}s"
        env[schedule_variable(stage, "_WINDOW")] = f"{DEMO_WINDOW}s"
    return env


def _clock(iso: str | None) -> str:
    if not iso:
        return "-"
    moment = datetime.fromisoformat(iso).astimezone(UTC)
    return moment.strftime("%m-%d %H:%M:%S")


def schedule(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show each stage's mode (continuous or scheduled), next run times and open windows."""
    report = schedule_report()
    if as_json:
        print(json.dumps(report))
    else:
        console.print(schedule_table(report))
