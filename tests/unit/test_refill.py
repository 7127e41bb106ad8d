"""The mid-chunk refill: at most one feed per interval per process, and never a raise."""

from __future__ import annotations

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
    monkeypatch.setattr(refill, "_last", 0.0)
    return calls


def test_calls_ending_within_the_interval_feed_once(feeds, monkeypatch) -> None:
    clock = iter([100.0, 100.1, 100.2])
    monkeypatch.setattr(refill, "monotonic", lambda: next(clock))

    for _ in range(3):
        refill.refill_after_call()

    assert feeds == [("high", "normal", "low")]


def test_a_call_ending_after_the_interval_feeds_again(feeds, monkeypatch) -> None:
    clock = iter([100.0, 100.0 + refill.REFILL_INTERVAL_S])
    monkeypatch.setattr(refill, "monotonic", lambda: next(clock))

    refill.refill_after_call()
    refill.refill_after_call()

    assert len(feeds) == 2


def test_an_outage_during_a_refill_is_logged_not_raised(monkeypatch) -> None:
    def broken(lanes: object) -> int:
        raise redis.ConnectionError("gone")

    monkeypatch.setattr(refill, "feed_lanes", broken)
    monkeypatch.setattr(refill, "_last", 0.0)
    monkeypatch.setattr(refill, "monotonic", lambda: 1000.0)

    refill.refill_after_call()  # no exception: the chunk's own feed follows
