"""Fixed run times: parsing, the guide's preset, beat's entries and next-run arithmetic.

Pure: ``pipeline.schedule`` and ``beat_schedule`` with no server. Settings tests
change the environment only through ``monkeypatch`` and clear the cache around.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from celery.schedules import crontab

from beat_schedule import OPEN_WINDOW_TASK, AlignedEvery, beat_entries, window_entries
from pipeline.schedule import (
    GUIDE_TIMES,
    ScheduleError,
    parse_duration,
    parse_plan,
    parse_stage,
    stage_time_limits,
    window_wait,
)
from pipeline.settings import SettingsError, get_settings

GUIDE_ENV = {
    "BATCH_SCHEDULE_PRESET": "guide",
    # The guide's writing run may take 2 h: a chunk's message and lease must outlast it.
    "BATCH_VISIBILITY_TIMEOUT": "7300",
    "BATCH_LEASE_SECONDS": "7260",
}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture()
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Documented defaults, then whatever the test sets; the settings cache cleared around."""
    for name in list(os.environ):
        if name.upper().startswith("BATCH_"):
            monkeypatch.delenv(name)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


# --- the guide's preset and beat's entries -------------------------------------------


def test_guide_preset_builds_exactly_the_twelve_utc_crontab_entries() -> None:
    entries = window_entries(parse_plan({}, {}, preset="guide", lanes="normal,low"), 15)
    crons = [
        (entry["args"][0], entry["schedule"])
        for entry in entries.values()
        if entry["task"] == OPEN_WINDOW_TASK
    ]
    expected = [
        (stage, crontab(hour=int(t[:2]), minute=int(t[3:])))
        for stage, times in GUIDE_TIMES.items()
        for t in times.split(",")
    ]
    # crontab compares by value but is not hashable: compare as lists, both ways
    assert len(crons) == len(expected) == 12
    assert all(c in expected for c in crons) and all(e in crons for e in expected)
    assert len([e for e in entries.values() if e["task"] == OPEN_WINDOW_TASK]) == 12
    assert sorted(int(name[-5:-3]) for name in entries if "@" in name) == sorted(
        (8, 14, 20, 9, 15, 21, 11, 17, 23, 12, 18, 0)
    )


def test_guide_preset_windows_are_the_guides_timeouts() -> None:
    plan = parse_plan({}, {}, preset="guide", lanes="normal,low")
    windows = {s.stage: s.window for s in plan.stages}
    assert windows == {"preflight": 1800, "writing": 7200, "qc": 3600, "delivery": 1800}


def test_continuous_by_default_adds_no_window_entries(env: pytest.MonkeyPatch) -> None:
    entries = beat_entries(get_settings())
    assert set(entries) == {"daily-summary"}
    assert all(s.continuous for s in get_settings().schedules().stages)


def test_guide_preset_through_settings_puts_the_entries_on_beat(env: pytest.MonkeyPatch) -> None:
    for name, value in GUIDE_ENV.items():
        env.setenv(name, value)
    entries = beat_entries(get_settings())
    assert sum(1 for e in entries.values() if e["task"] == OPEN_WINDOW_TASK) == 12
    assert "open-due-windows" in entries


def test_a_stage_variable_overrides_the_preset(env: pytest.MonkeyPatch) -> None:
    for name, value in GUIDE_ENV.items():
        env.setenv(name, value)
    env.setenv("BATCH_SCHEDULE_QC", "continuous")
    plan = get_settings().schedules()
    assert plan.of("qc").continuous
    assert plan.of("writing").describe() == "09:00,15:00,21:00"


# --- next runs: across midnight, UTC ---------------------------------------------------


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        ("2026-03-29T19:00:00", "2026-03-30T00:00:00"),  # EU DST night: UTC does not move
        ("2026-03-29T23:59:59", "2026-03-30T00:00:00"),
        ("2026-03-30T00:00:00", "2026-03-30T12:00:00"),  # exactly at a run: the next one
        ("2026-10-25T12:00:01", "2026-10-25T18:00:00"),
        ("2026-12-31T18:30:00", "2027-01-01T00:00:00"),  # across the year too
    ],
)
def test_delivery_next_run_crosses_midnight(now: str, expected: str) -> None:
    delivery = parse_plan({}, {}, preset="guide", lanes="normal").of("delivery")
    assert delivery.next_run(at(now)) == at(expected)


def test_latest_run_before_the_first_of_the_day_is_yesterdays_last() -> None:
    preflight = parse_plan({}, {}, preset="guide", lanes="normal").of("preflight")
    assert preflight.latest_run(at("2026-06-01T07:59:00")) == at("2026-05-31T20:00:00")
    assert preflight.latest_run(at("2026-06-01T08:00:00")) == at("2026-06-01T08:00:00")


def test_next_runs_lists_the_following_days_runs_in_order() -> None:
    qc = parse_plan({}, {}, preset="guide", lanes="normal").of("qc")
    runs = qc.next_runs(at("2026-06-01T22:00:00"), 4)
    assert runs == [
        at("2026-06-01T23:00:00"),
        at("2026-06-02T11:00:00"),
        at("2026-06-02T17:00:00"),
        at("2026-06-02T23:00:00"),
    ]


def test_a_window_is_open_from_its_run_time_for_its_length() -> None:
    writing = parse_plan({}, {}, preset="guide", lanes="normal").of("writing")
    assert writing.open_run(at("2026-06-01T09:00:00")) == at("2026-06-01T09:00:00")
    assert writing.open_run(at("2026-06-01T10:59:59")) == at("2026-06-01T09:00:00")
    assert writing.open_run(at("2026-06-01T11:00:00")) is None
    assert writing.open_run(at("2026-06-01T08:59:59")) is None


def test_every_form_runs_at_epoch_multiples_plus_offset() -> None:
    stage = parse_stage("qc", "every 20s+5s", "3s")
    assert stage.next_run(at("2026-06-01T00:00:00")) == at("2026-06-01T00:00:05")
    assert stage.next_run(at("2026-06-01T00:00:05")) == at("2026-06-01T00:00:25")
    assert stage.latest_run(at("2026-06-01T00:00:04")) == at("2026-05-31T23:59:45")
    assert stage.is_run_time(at("2026-06-01T00:00:25"))
    assert not stage.is_run_time(at("2026-06-01T00:00:26"))


def test_aligned_every_is_due_once_per_run_time() -> None:
    clock = {"now": at("2026-06-01T00:00:06")}
    every = AlignedEvery(20, 5, nowfun=lambda: clock["now"])
    due, wait = every.is_due(at("2026-06-01T00:00:04"))  # last ran before the 00:05 run
    assert due and wait == pytest.approx(19)
    due, wait = every.is_due(at("2026-06-01T00:00:05.5"))  # ran it
    assert not due and wait == pytest.approx(19)
    assert AlignedEvery(20, 5) == AlignedEvery(20, 5) != AlignedEvery(20, 6)


# --- bad values stop start-up, naming the variable -------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("BATCH_SCHEDULE_WRITING", "9:00", "BATCH_SCHEDULE_WRITING"),
        ("BATCH_SCHEDULE_WRITING", "25:00", "BATCH_SCHEDULE_WRITING"),
        ("BATCH_SCHEDULE_WRITING", "09:00,09:00", "names a time twice"),
        ("BATCH_SCHEDULE_QC", "every 0s", "BATCH_SCHEDULE_QC"),
        ("BATCH_SCHEDULE_QC", "every 10s+10s", "offset < N"),
        ("BATCH_SCHEDULE_QC_WINDOW", "soon", "BATCH_SCHEDULE_QC_WINDOW"),
        ("BATCH_SCHEDULE_LANES", "urgent", "BATCH_SCHEDULE_LANES"),
        ("BATCH_SCHEDULE_PUBLISHING", "08:00", "BATCH_SCHEDULE_PUBLISHING"),
        ("BATCH_SCHEDULE_PRESET", "fast", "BATCH_SCHEDULE_PRESET"),
    ],
)
def test_an_invalid_schedule_stops_start_up_naming_the_variable(
    env: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    if name.startswith("BATCH_SCHEDULE_QC_"):
        env.setenv("BATCH_SCHEDULE_QC", "every 60s")
    env.setenv(name, value)
    with pytest.raises(SettingsError, match=message):
        get_settings()


def test_a_window_longer_than_the_gap_between_runs_is_refused(env: pytest.MonkeyPatch) -> None:
    env.setenv("BATCH_SCHEDULE_QC", "11:00,12:00")
    env.setenv("BATCH_SCHEDULE_QC_WINDOW", "90m")
    with pytest.raises(SettingsError, match="BATCH_SCHEDULE_QC_WINDOW is 5400 s"):
        get_settings()


def test_the_gap_across_midnight_counts_too() -> None:
    with pytest.raises(ScheduleError, match="only 3600 s apart"):
        parse_stage("delivery", "23:30,00:30,12:00", "2h")


def test_the_guide_preset_needs_a_visibility_timeout_above_writings_two_hours(
    env: pytest.MonkeyPatch,
) -> None:
    env.setenv("BATCH_SCHEDULE_PRESET", "guide")
    with pytest.raises(SettingsError, match="BATCH_VISIBILITY_TIMEOUT must exceed the scheduled"):
        get_settings()


# --- time limits -------------------------------------------------------------------------


def test_time_limits_are_the_guides_windows_for_scheduled_stages_and_540_600_otherwise(
    env: pytest.MonkeyPatch,
) -> None:
    for name, value in GUIDE_ENV.items():
        env.setenv(name, value)
    env.setenv("BATCH_SCHEDULE_QC", "continuous")
    settings = get_settings()
    assert settings.stage_time_limits("preflight") == (1620, 1800)
    assert settings.stage_time_limits("writing") == (6480, 7200)
    assert settings.stage_time_limits("qc") == (540, 600)
    assert settings.stage_time_limits("delivery") == (1620, 1800)
    assert stage_time_limits(parse_stage("qc", "every 60s", "5s"), 540, 600) == (540, 600)
    assert stage_time_limits(parse_stage("qc", "continuous", ""), 540, 600) == (540, 600)


@pytest.mark.parametrize(
    ("text", "seconds"), [("30m", 1800), ("2h", 7200), ("45s", 45), ("90", 90)]
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration("X", text) == seconds


# --- the wait for windows in the ETA ------------------------------------------------------


def test_an_order_in_preflight_waits_for_each_closed_window_ahead_in_turn() -> None:
    plan = parse_plan({}, {}, preset="guide", lanes="normal")
    now = at("2026-06-01T21:30:00")  # after writing's 21:00 run opened; it is open till 23:00
    # preflight next at 08:00 (+10.5 h); writing then opens 09:00; QC 11:00; delivery 12:00
    assert window_wait(plan, ["preflight"], now) == timedelta(hours=14, minutes=30).total_seconds()
    # An order already in delivery waits only for delivery's 00:00 run
    assert window_wait(plan, ["delivery"], now) == timedelta(hours=2, minutes=30).total_seconds()
    assert window_wait(plan, [], now) == 0.0


def test_a_window_the_ledger_holds_open_counts_as_open_now() -> None:
    plan = parse_plan(
        {"qc": "every 60s", "delivery": "continuous"}, {"qc": "5s"}, preset="", lanes="normal"
    )
    now = at("2026-06-01T00:00:30")
    assert window_wait(plan, ["qc"], now) == 30.0
    assert window_wait(plan, ["qc"], now, opened={"qc"}) == 0.0


def test_high_lane_is_not_gated_by_default() -> None:
    plan = parse_plan({}, {}, preset="guide", lanes="normal,low")
    assert plan.gates("writing", "normal") and plan.gates("writing", "low")
    assert not plan.gates("writing", "high")


# --- opening a run: on time, late within its window, missed entirely ----------------------


def test_a_window_opened_on_time_or_late_closes_on_schedule_and_a_missed_one_opens_now() -> None:
    from tasks.windows import plan_window

    qc = parse_stage("qc", "11:00,17:00,23:00", "1h")
    run = at("2026-06-01T11:00:00")
    on_time = plan_window(qc, run, at("2026-06-01T11:00:02"))
    assert (on_time.opens_at, on_time.closes_at, on_time.late) == (
        run,
        at("2026-06-01T12:00:00"),
        False,
    )
    late = plan_window(
        qc, run, at("2026-06-01T11:20:00")
    )  # a late beat: the window still ends at 12
    assert (late.opens_at, late.closes_at, late.late) == (run, at("2026-06-01T12:00:00"), True)
    missed = plan_window(
        qc, run, at("2026-06-01T13:00:00")
    )  # beat was down: a full window from now
    assert (missed.opens_at, missed.closes_at, missed.late) == (
        at("2026-06-01T13:00:00"),
        at("2026-06-01T14:00:00"),
        True,
    )


# --- the demo's compressed schedule and the CLI's wording --------------------------------


def test_the_demo_schedule_runs_each_stage_first_a_few_seconds_after_the_start() -> None:
    from cli.schedule_cmd import DEMO_FIRST_RUNS, compressed_schedule

    start = at("2026-06-01T10:00:00").timestamp() + 5.4
    env = compressed_schedule(start)
    plan = parse_plan(
        {s: env[f"BATCH_SCHEDULE_{s.upper()}"] for s in ("preflight", "writing", "qc", "delivery")},
        {
            s: env[f"BATCH_SCHEDULE_{s.upper()}_WINDOW"]
            for s in ("preflight", "writing", "qc", "delivery")
        },
        preset="",
        lanes="normal,low",
    )
    begun = datetime.fromtimestamp(start, tz=UTC)
    runs = [s.next_run(begun) for s in plan.stages]
    firsts = [(run - begun).total_seconds() for run in runs if run is not None]
    assert firsts == pytest.approx([f - 0.4 for f in DEMO_FIRST_RUNS])


def test_status_rows_and_the_demo_label_say_what_waits_for_which_window() -> None:
    from cli.schedule_cmd import window_note, window_rows

    status = {
        "waiting_for_window": {
            "writing": {
                "orders": 12,
                "window_open_until": None,
                "next_window": "2026-06-01T15:00:00+00:00",
            },
            "qc": {
                "orders": 3,
                "window_open_until": "2026-06-01T12:00:00+00:00",
                "next_window": "2026-06-01T17:00:00+00:00",
            },
        }
    }
    assert window_rows(status) == [
        ("writing waits", "12 orders; next window 06-01 15:00:00"),
        ("qc waits", "3 orders; window open until 06-01 12:00:00"),
    ]
    assert window_note(status) == "waiting for window: writing 12 @15:00:00"
    assert window_rows({}) == [] and window_note({"waiting_for_window": {}}) == ""


def test_open_window_without_run_at_takes_the_run_beat_sent_it_for_despite_a_lagging_clock(
    env: pytest.MonkeyPatch,
) -> None:
    from tasks.windows import _run_time

    writing = parse_stage("writing", "09:00,15:00,21:00", "2h")
    # beat sent at 09:00:00; this worker's clock says 08:59:58
    assert _run_time(writing, None, at("2026-06-01T08:59:58")) == at("2026-06-01T09:00:00")
    assert _run_time(writing, None, at("2026-06-01T10:30:00")) == at("2026-06-01T09:00:00")
    with pytest.raises(ValueError, match="run_at: 2026-06-01T09:30:00 is not a run time"):
        _run_time(writing, "2026-06-01T09:30:00", at("2026-06-01T10:00:00"))
    with pytest.raises(ValueError, match="run_at: 'soon' is not an ISO date-time"):
        _run_time(writing, "soon", at("2026-06-01T10:00:00"))


def test_the_schedule_table_shows_modes_next_runs_and_open_windows() -> None:
    from rich.console import Console

    from cli.schedule_cmd import schedule_table

    report = {
        "lanes": ["low", "normal"],
        "stages": [
            {"stage": "preflight", "mode": "continuous", "run_times": "continuous",
             "window_seconds": None, "next_runs": [], "open_window": None},
            {"stage": "writing", "mode": "scheduled", "run_times": "09:00,15:00,21:00",
             "window_seconds": 7200, "next_runs": ["2026-06-01T15:00:00+00:00"],
             "open_window": {"closes_at": "2026-06-01T11:00:00+00:00"}},
        ],
    }  # fmt: skip
    console = Console(record=True, width=160)
    console.print(schedule_table(report))
    text = console.export_text()
    assert "lanes low,normal" in text
    assert "09:00,15:00,21:00" in text and "7200 s" in text
    assert "06-01 15:00:00" in text and "until 06-01 11:00:00" in text
