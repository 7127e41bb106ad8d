"""Scheduled stages against real servers: a real worker, real beat processes, the ledger.

Each test runs its own worker and beat on a Redis database of its own, with
writing scheduled; the session's workers are not started here. Orders of the
normal lane wait in the pool for writing's window; high-lane orders pass. The
windowed test uses the test form ``every 15s`` with a 4 s window and two beat
processes; the writer sleeps 0.4 s per article, one call at a time, so a window
cannot write every order and some wait for the next one.

The module runs on a ledger database of its own (its workers, beats and this
process alike): a beat's sweeps over the session's shared ledger would restore
every other test's final results and resend their notifications, work that, on
the windowed test's single worker process, once delayed its first writing chunk
past a 4 s window. Every test deletes writing's and QC's ``schedule_windows`` rows
before and after and cancels its batches in ``finally``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shelve
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import pytest
import redis
from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from celery_app import IO_LANES
from cli.workers import ALL_LANES, spawn_beat, spawn_worker, stop_workers
from ledger.db import transaction
from ledger.models import Event, Item, ScheduleWindow, StageOutput
from pipeline.schedule import parse_stage
from pipeline.settings import get_settings
from tests.integration.helpers import make_orders, submit_in_child, wait_for_final, wait_until
from tests.support import apply_environment, seed_sample_catalog
from tests.support_metrics import own_ledger

pytestmark = pytest.mark.integration

SCHEDULE_REDIS_DB = 3
WRITING_MAX = 3
#: A scheduled writing chunk may run 2 h (the guide's limit): messages and leases outlast it.
LONG_LIMITS = {"BATCH_VISIBILITY_TIMEOUT": "7300", "BATCH_LEASE_SECONDS": "7260"}
#: How long after a window's close a chunk taken inside it may still start items.
RUNNING_CHUNK_SLACK = timedelta(seconds=8)


@pytest.fixture(scope="module")
def ledger_env(service_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """``service_env`` on a migrated ledger of the module's own, with the sample catalog.

    This process follows it too while the module runs (the helpers below, the
    in-process task calls), and goes back to the session's ledger after.
    """
    with own_ledger(service_env) as (url, engine):
        with Session(engine) as session, session.begin():
            seed_sample_catalog(session)
        apply_environment({"DATABASE_URL": url})
        try:
            yield {**service_env, "DATABASE_URL": url}
        finally:
            apply_environment({"DATABASE_URL": service_env["DATABASE_URL"]})


@pytest.fixture()
def clean_windows(ledger_env: dict[str, str]) -> Iterator[None]:
    """No writing or QC window rows before or after the test."""

    def wipe() -> None:
        with transaction() as session:
            session.execute(
                delete(ScheduleWindow).where(ScheduleWindow.stage.in_(("writing", "qc")))
            )

    wipe()
    try:
        yield
    finally:
        wipe()


def _cancel(batch_id: str) -> None:
    from tasks.control import ControlRefused, cancel_batch

    with contextlib.suppress(ControlRefused, LookupError):  # ended, or never submitted
        cancel_batch(batch_id)


def _cli(env: dict[str, str], *args: str) -> Any:
    command = [sys.executable, "-m", "cli", *args]
    done = subprocess.run(command, env={**os.environ, **env}, check=True, capture_output=True)
    return json.loads(done.stdout)


def _pooled_writing(batch_id: str) -> int:
    with transaction() as session:
        query = select(Item.id).where(
            Item.batch_id == batch_id,
            Item.state == "WRITING",
            Item.queued_at.is_(None),
            Item.lease_owner.is_(None),
        )
        return len(session.scalars(query).all())


def _writing_starts(batch_id: str) -> dict[int, list[datetime]]:
    """item id -> start times of its writing outputs."""
    with transaction() as session:
        rows = session.execute(
            select(StageOutput.item_id, StageOutput.started_at)
            .join(Item, Item.id == StageOutput.item_id)
            .where(Item.batch_id == batch_id, StageOutput.stage == "writing")
        )
        found: dict[int, list[datetime]] = {}
        for item_id, started in rows:
            assert started is not None, "every output records when its item started"
            found.setdefault(int(item_id), []).append(started)
        return found


#: Every window, whenever it opened.
_EVER: Final = datetime.min.replace(tzinfo=UTC)


def _windows(stage: str, since: datetime = _EVER) -> list[tuple[datetime, datetime, datetime]]:
    """(run_at, opens_at, closes_at) of the stage's windows opened from ``since``, oldest first."""
    with transaction() as session:
        rows = session.execute(
            select(ScheduleWindow.run_at, ScheduleWindow.opens_at, ScheduleWindow.closes_at)
            .where(ScheduleWindow.stage == stage, ScheduleWindow.opens_at >= since)
            .order_by(ScheduleWindow.run_at)
        )
        return [(r, o, c) for r, o, c in rows]


def _opened_events(stage: str, since: datetime) -> dict[str, int]:
    """run_at -> how many window_opened* events the stage's runs have since ``since``."""
    with transaction() as session:
        rows = session.execute(
            select(Event.data).where(
                Event.kind.like("window_opened%"),
                Event.created_at >= since,
                Event.data["stage"].astext == stage,
            )
        )
        counts: dict[str, int] = {}
        for (data,) in rows:
            counts[data["run_at"]] = counts.get(data["run_at"], 0) + 1
        return counts


def _writing_chunk_sizes(url: str) -> list[int]:
    """Item counts of the writing messages waiting in the normal lane's queue right now."""
    client = redis.Redis.from_url(url)
    try:
        sizes = []
        # Writing is I/O-bound: its chunks wait in the lane's I/O queue.
        for raw in client.lrange(IO_LANES["normal"], 0, -1):
            message = json.loads(raw)
            if message["headers"].get("task") != "batchline.stage.writing":
                continue
            _, kwargs, _ = json.loads(base64.b64decode(message["body"]))
            sizes.append(len(kwargs["item_ids"]))
        return sizes
    finally:
        client.close()


def _scheduled_env(
    ledger_env: dict[str, str], isolated_redis: Callable[[int], str], **extra: str
) -> dict[str, str]:
    return {**ledger_env, "REDIS_URL": isolated_redis(SCHEDULE_REDIS_DB), **extra}


def test_normal_orders_wait_for_writings_window_while_high_orders_pass(
    ledger_env: dict[str, str],
    isolated_redis: Callable[[int], str],
    clean_windows: None,
    tmp_path: Path,
) -> None:
    # Given writing scheduled once a day, twelve hours from now (it cannot open in the test)
    run = (datetime.now(UTC) + timedelta(hours=12)).replace(second=0, microsecond=0)
    # (its window, and so its chunks' time limit, is the guide's 2 h: long limits needed)
    env = _scheduled_env(
        ledger_env, isolated_redis, **LONG_LIMITS, BATCH_SCHEDULE_WRITING=run.strftime("%H:%M")
    )
    worker = spawn_worker(
        ALL_LANES, concurrency=2, name="sched1", env=env, log_path=tmp_path / "w.log"
    )
    beat = spawn_beat(env=env, log_path=tmp_path / "beat.log", schedule_path=tmp_path / "sched")
    tag = uuid.uuid4().hex[:6]
    normal, high = f"sched-normal-{tag}", f"sched-high-{tag}"
    try:
        # When a normal and a high batch are submitted
        submit_in_child(
            [
                {"id": normal, "priority": "normal", "orders": make_orders(8, normal)},
                {"id": high, "priority": "high", "orders": make_orders(4, high)},
            ],
            env,
            tmp_path,
        )
        # Then the high batch passes writing at once and completes
        assert wait_for_final([high], timeout=180) == {high: "COMPLETED"}
        # and every normal order waits in the pool at writing, none written
        wait_until(lambda: _pooled_writing(normal) == 8, timeout=120, interval=0.2)
        assert _writing_starts(normal) == {}
        assert _windows("writing") == []

        # and status says how many wait for which window, the ETA counting the wait
        status = _cli(env, "status", normal, "--json")
        waiting = status["waiting_for_window"]["writing"]
        assert waiting["orders"] == 8 and waiting["window_open_until"] is None
        assert datetime.fromisoformat(waiting["next_window"]) == run
        to_run = (run - datetime.now(UTC)).total_seconds()
        assert status["window_wait_seconds"] > to_run - 120
        assert status["estimated_time_remaining"] >= status["window_wait_seconds"]
        # and `batchline schedule` shows writing scheduled, its next run, no open window
        report = _cli(env, "schedule", "--json")
        writing = next(s for s in report["stages"] if s["stage"] == "writing")
        assert writing["mode"] == "scheduled" and writing["open_window"] is None
        assert datetime.fromisoformat(writing["next_runs"][0]) == run
        assert {s["mode"] for s in report["stages"] if s["stage"] != "writing"} == {"continuous"}
    finally:
        _cancel(normal)
        stop_workers([worker, beat])


def _after_a_close(period: int, window: int) -> None:
    """Sleep until a second after a window (by the clock) has closed.

    Always the start of a gap, never its end: orders submitted a moment before a
    window opens would still be in preflight while it is open, and it would write
    nothing (seen under load).
    """
    schedule = parse_stage("writing", f"every {period}s", f"{window}s")
    now = datetime.now(UTC)
    latest = schedule.latest_run(now)
    assert latest is not None
    target = latest + timedelta(seconds=window + 1)
    if target < now:
        target += timedelta(seconds=period)
    time.sleep((target - now).total_seconds())


def test_a_window_writes_chunks_while_open_and_the_rest_waits_for_the_next(
    ledger_env: dict[str, str],
    isolated_redis: Callable[[int], str],
    clean_windows: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    period, window = 15, 4
    schedule = {
        "BATCH_SCHEDULE_WRITING": f"every {period}s",
        "BATCH_SCHEDULE_WRITING_WINDOW": f"{window}s",
    }
    env = _scheduled_env(
        ledger_env,
        isolated_redis,
        **schedule,
        WRITER_OFFLINE_LATENCY_MS="400",
        BATCH_IO_CONCURRENCY="1",
        BATCH_CHUNK_WRITING_OPTIMAL="2",
        BATCH_CHUNK_WRITING_MAX=str(WRITING_MAX),
    )
    # Given a worker and two beat processes (one is supported; a second must be harmless)
    worker = spawn_worker(
        ALL_LANES, concurrency=1, name="sched2", env=env, log_path=tmp_path / "w.log"
    )
    beats = [
        spawn_beat(env=env, log_path=tmp_path / f"beat{n}.log", schedule_path=tmp_path / f"s{n}")
        for n in (1, 2)
    ]
    batch = f"sched-window-{uuid.uuid4().hex[:6]}"
    started = datetime.now(UTC)
    try:
        # When 20 normal orders arrive just after a window closed
        _after_a_close(period, window)
        submitted = datetime.now(UTC)
        # (the window just closed, opened before the orders existed, is not theirs)
        since = submitted - timedelta(seconds=1)
        submit_in_child(
            [{"id": batch, "priority": "normal", "orders": make_orders(20, batch)}], env, tmp_path
        )

        # Then the first window writes some of them, in chunks of at most the stage's max
        sizes: list[int] = []

        def first_window_closed() -> bool:
            sizes.extend(_writing_chunk_sizes(env["REDIS_URL"]))
            opened = _windows("writing", since)
            return bool(opened) and datetime.now(UTC) > opened[0][2] + RUNNING_CHUNK_SLACK

        wait_until(first_window_closed, timeout=60, interval=0.1)
        first_run, first_open, first_close = _windows("writing", since)[0]
        assert first_open >= submitted - timedelta(seconds=1)
        written = _writing_starts(batch)
        assert written, "the first window wrote nothing"
        assert sizes and max(sizes) <= WRITING_MAX
        # nothing was written before the window opened
        assert min(s for starts in written.values() for s in starts) >= first_open
        # and the orders left at the close wait in the pool for the next window
        left = _pooled_writing(batch)
        assert left > 0
        # every order is written or back in the pool: messages taken after the close
        # gave theirs back instead of writing them
        assert left + len(_writing_starts(batch)) == 20

        def second_window_opened() -> bool:
            return len(_windows("writing", since)) >= 2

        wait_until(second_window_opened, timeout=40, interval=0.2)
        second_open = _windows("writing", since)[1][1]
        assert second_open - first_open == timedelta(seconds=period)
        between = [
            s
            for starts in _writing_starts(batch).values()
            for s in starts
            if first_close + RUNNING_CHUNK_SLACK < s < second_open
        ]
        assert between == []
        # the second window writes more of them
        wait_until(lambda: len(_writing_starts(batch)) > len(written), timeout=30, interval=0.2)

        # and with two beats each run opened once, and no order was written twice
        assert all(b.poll() is None for b in beats), "a beat process died"
        opened = _opened_events("writing", started)
        assert len(opened) >= 2 and set(opened.values()) == {1}
        assert all(len(starts) == 1 for starts in _writing_starts(batch).values())

        # and a duplicate open_window for the same run opens nothing
        for name, value in schedule.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        from tasks.windows import open_window

        again = open_window("writing", first_run.isoformat())
        assert again["opened"] is False
        assert _opened_events("writing", started)[first_run.isoformat()] == 1
    finally:
        get_settings.cache_clear()
        _cancel(batch)
        stop_workers([worker, *beats])
    # and both beats did send open_window at the run times (their stores, synced on exit)
    for n in (1, 2):
        assert _beat_runs(tmp_path / f"s{n}", f"open-window:writing:every {period}s+0s") >= 2


def _beat_runs(store: Path, entry: str) -> int:
    """How often a stopped beat sent ``entry`` (its shelve store counts the runs)."""
    with shelve.open(str(store), flag="r") as db:
        return int(db["entries"][entry].total_run_count)


def test_a_run_beat_missed_entirely_opens_late_once_with_an_event(
    ledger_env: dict[str, str], clean_windows: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ledger.windows import Window, record_window
    from tasks.windows import open_due_windows

    # Given QC every 20 s with a 2 s window that ran before, and its latest run missed
    monkeypatch.setenv("BATCH_SCHEDULE_QC", "every 20s")
    monkeypatch.setenv("BATCH_SCHEDULE_QC_WINDOW", "2s")
    get_settings.cache_clear()
    try:
        schedule = get_settings().schedules().of("qc")
        now = datetime.now(UTC)
        latest = schedule.latest_run(now)
        assert latest is not None
        if now < latest + timedelta(seconds=3):
            time.sleep((latest + timedelta(seconds=3) - now).total_seconds())
        earlier = latest - timedelta(seconds=40)
        with transaction() as session:
            record_window(
                session,
                Window("qc", earlier, earlier, earlier + timedelta(seconds=2), False),
                opened_by="test",
            )
        since = datetime.now(UTC)

        # When the catch-up runs twice
        first = open_due_windows()
        second = open_due_windows()

        # Then the missed run opened once, late, for a full window from now, with an event
        assert [w["run_at"] for w in first] == [latest.isoformat()]
        assert first[0]["opened"] and first[0]["late"]
        opens = datetime.fromisoformat(first[0]["opens_at"])
        assert opens >= since and datetime.fromisoformat(
            first[0]["closes_at"]
        ) == opens + timedelta(seconds=2)
        assert second == []
        with transaction() as session:
            kinds = session.scalars(
                select(Event.kind).where(
                    Event.created_at >= since, Event.data["run_at"].astext == latest.isoformat()
                )
            ).all()
        assert kinds == ["window_opened_late"]
    finally:
        get_settings.cache_clear()


def test_the_daily_summary_is_recorded_once_per_day(ledger_env: dict[str, str]) -> None:
    from tasks.summary import daily_summary

    # A day far in the past: no other test's summary is for it
    now = datetime(2001, 1, 2, 0, 5, tzinfo=UTC)
    try:
        first = daily_summary(now)
        second = daily_summary(now)
        assert first["recorded"] and first["day"] == "2001-01-01"
        assert first["batches_submitted"] == 0 and first["orders_delivered"] == 0
        assert second == {"day": "2001-01-01", "recorded": False}
        with transaction() as session:
            count = session.scalar(
                text(
                    "SELECT count(*) FROM events WHERE kind = 'daily_summary' AND data->>'day' = :d"
                ),
                {"d": "2001-01-01"},
            )
        assert count == 1
    finally:
        with transaction() as session:
            session.execute(
                text("DELETE FROM events WHERE kind = 'daily_summary' AND data->>'day' = :d"),
                {"d": "2001-01-01"},
            )
