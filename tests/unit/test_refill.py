"""The mid-chunk refill: one trailing feed for the calls that end together, never a raise."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import redis

from tasks import refill


@pytest.fixture()
def feeds(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    calls: list[tuple[str, ...]] = []

    def feed_lanes(lanes: tuple[str, ...]) -> int:
        calls.append(tuple(lanes))
        return 0

    monkeypatch.setattr(refill, "feed_lanes", feed_lanes)
    return calls


@pytest.fixture()
def timers(monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, Callable[[], None]]]:
    """Scheduled refills, run by the test instead of a timer thread."""
    scheduled: list[tuple[float, Callable[[], None]]] = []
    monkeypatch.setattr(refill, "_pending", False)
    monkeypatch.setattr(refill, "_schedule", lambda delay, run: scheduled.append((delay, run)))
    return scheduled


def test_calls_ending_before_the_refill_runs_join_one_feed(feeds, timers) -> None:
    # Given three calls that end one after another, before any refill has run
    for _ in range(3):
        refill.refill_after_call()

    # Then one feed is scheduled, the interval after the first, and nothing fed yet
    assert [delay for delay, _ in timers] == [refill.REFILL_INTERVAL_S]
    assert feeds == []

    # When it runs, it feeds every lane once, high first
    timers[0][1]()
    assert feeds == [("high", "normal", "low")]


def test_a_call_ending_after_the_refill_ran_schedules_the_next(feeds, timers) -> None:
    refill.refill_after_call()
    timers[0][1]()

    refill.refill_after_call()

    assert len(timers) == 2
    timers[1][1]()
    assert len(feeds) == 2


def test_a_call_ending_during_a_feed_is_not_dropped(feeds, timers, monkeypatch) -> None:
    # Given a feed under way, during which another call gives its slot back
    def feed_lanes(lanes: tuple[str, ...]) -> int:
        feeds.append(tuple(lanes))
        if len(feeds) == 1:
            refill.refill_after_call()
        return 0

    monkeypatch.setattr(refill, "feed_lanes", feed_lanes)
    refill.refill_after_call()

    # When the first refill runs
    timers[0][1]()

    # Then a second one is scheduled for the slot given back meanwhile
    assert len(timers) == 2
    timers[1][1]()
    assert len(feeds) == 2


def test_an_outage_during_a_refill_is_logged_not_raised(timers, monkeypatch) -> None:
    def broken(lanes: object) -> int:
        raise redis.ConnectionError("gone")

    monkeypatch.setattr(refill, "feed_lanes", broken)
    refill.refill_after_call()

    timers[0][1]()  # no exception: the chunk's own feed follows

    refill.refill_after_call()  # and the next call may schedule a refill again
    assert len(timers) == 2


def test_a_real_timer_runs_the_scheduled_feed(feeds, monkeypatch) -> None:
    # Given the real timer thread
    monkeypatch.setattr(refill, "_pending", False)
    done = threading.Event()

    def feed_lanes(lanes: tuple[str, ...]) -> int:
        feeds.append(tuple(lanes))
        done.set()
        return 0

    monkeypatch.setattr(refill, "feed_lanes", feed_lanes)

    refill.refill_after_call()

    # Then the feed happens in the timer's thread (generous deadline: shared machine)
    assert done.wait(timeout=30)
    assert feeds == [("high", "normal", "low")]
