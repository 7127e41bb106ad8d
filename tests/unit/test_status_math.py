"""Status maths: progress and success percentages, and an ETA from measured throughput."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.status import Counters, human_duration, items_at_stage, summarize

STARTED = 1_700_000_000.0


def counters(
    total: int,
    completed: int = 0,
    failed: int = 0,
    cancelled: int = 0,
    elapsed: float = 60.0,
) -> Counters:
    return Counters(
        total=total,
        completed=completed,
        failed=failed,
        cancelled=cancelled,
        started_at=STARTED,
        updated_at=STARTED + elapsed,
    )


def test_percentages_count_every_terminal_item_but_success_only_what_ended() -> None:
    # Given 10 orders: 6 delivered, 2 failed, 1 cancelled, 1 still running
    status = summarize(counters(10, completed=6, failed=2, cancelled=1), finished=False)

    assert status["progress_percentage"] == 90.0
    assert status["success_rate"] == 75.0  # 6 of the 8 that ran to an end


@pytest.mark.parametrize(
    ("total", "completed", "failed", "progress", "success"),
    [
        (3, 1, 0, 33.33, 100.0),
        (3, 2, 0, 66.67, 100.0),
        (3, 1, 2, 100.0, 33.33),
        (200, 0, 1, 0.5, 0.0),
        (7, 7, 0, 100.0, 100.0),
    ],
)
def test_percentages_are_rounded_to_two_places(
    total: int, completed: int, failed: int, progress: float, success: float
) -> None:
    status = summarize(counters(total, completed=completed, failed=failed), finished=False)

    assert status["progress_percentage"] == progress
    assert status["success_rate"] == success


def test_before_any_item_ends_there_is_no_eta_and_no_success_rate() -> None:
    status = summarize(counters(100, elapsed=300.0), finished=False)

    assert status["progress_percentage"] == 0.0
    assert status["success_rate"] is None
    assert status["estimated_time_remaining"] is None


def test_only_cancelled_items_give_progress_but_no_success_rate() -> None:
    status = summarize(counters(4, cancelled=2), finished=False)

    assert status["progress_percentage"] == 50.0
    assert status["success_rate"] is None


def test_eta_divides_what_remains_by_the_throughput_so_far() -> None:
    # 20 of 100 ended in 40 s: 0.5 items/s, so 80 remaining take 160 s
    status = summarize(counters(100, completed=15, failed=5, elapsed=40.0), finished=False)

    assert status["estimated_time_remaining"] == 160.0


def test_eta_counts_cancelled_items_as_done() -> None:
    status = summarize(counters(10, completed=2, cancelled=3, elapsed=10.0), finished=False)

    assert status["estimated_time_remaining"] == 10.0  # 5 left at 0.5 items/s


def test_eta_is_rounded_to_a_tenth_of_a_second() -> None:
    status = summarize(counters(10, completed=3, elapsed=10.0), finished=False)

    assert status["estimated_time_remaining"] == 23.3  # 7 / 0.3


@pytest.mark.parametrize("elapsed", [0.0, -5.0])
def test_no_eta_when_no_time_has_passed(elapsed: float) -> None:
    status = summarize(counters(10, completed=3, elapsed=elapsed), finished=False)

    assert status["estimated_time_remaining"] is None


def test_all_items_ended_gives_an_eta_of_zero_even_before_finishing() -> None:
    status = summarize(counters(5, completed=5, elapsed=10.0), finished=False)

    assert status["estimated_time_remaining"] == 0.0


@pytest.mark.parametrize(
    "state",
    [counters(10, completed=4, failed=1), counters(10), counters(10, completed=4, elapsed=0.0)],
)
def test_a_finished_batch_has_an_eta_of_zero(state: Counters) -> None:
    assert summarize(state, finished=True)["estimated_time_remaining"] == 0.0


def test_an_empty_batch_is_fully_done() -> None:
    status = summarize(counters(0), finished=False)

    assert status["progress_percentage"] == 100.0
    assert status["success_rate"] is None
    assert status["estimated_time_remaining"] is None
    assert summarize(counters(0), finished=True)["estimated_time_remaining"] == 0.0


@settings(deadline=None, database=None)
@given(
    parts=st.tuples(st.integers(0, 10_000), st.integers(0, 10_000), st.integers(0, 10_000)),
    running=st.integers(0, 10_000),
    elapsed=st.floats(0.001, 1e6),
)
def test_percentages_stay_within_0_and_100_and_eta_is_never_negative(
    parts: tuple[int, int, int], running: int, elapsed: float
) -> None:
    completed, failed, cancelled = parts
    total = completed + failed + cancelled + running

    status = summarize(
        counters(total, completed, failed, cancelled, elapsed=elapsed), finished=False
    )

    assert 0.0 <= status["progress_percentage"] <= 100.0
    assert status["success_rate"] is None or 0.0 <= status["success_rate"] <= 100.0
    eta = status["estimated_time_remaining"]
    assert (eta is None) == (completed + failed + cancelled == 0)
    assert eta is None or eta >= 0.0


def test_velocity_remaining_and_a_readable_eta_come_with_the_numbers() -> None:
    # Given 100 orders of which 20 ended in the first 40 seconds
    status = summarize(counters(100, completed=15, failed=5, elapsed=40.0), finished=False)

    assert status["remaining"] == 80
    assert status["velocity"] == 0.5
    assert (status["estimated_time_remaining"], status["eta_human"]) == (160.0, "2 min 40 s")


def test_before_any_order_ends_velocity_is_zero_and_the_eta_unknown() -> None:
    status = summarize(counters(10, elapsed=30.0), finished=False)

    assert (status["velocity"], status["remaining"], status["eta_human"]) == (0.0, 10, "unknown")


def test_a_finished_batch_has_nothing_remaining_and_an_eta_of_zero_seconds() -> None:
    status = summarize(counters(4, completed=3, cancelled=1, elapsed=8.0), finished=True)

    assert (status["remaining"], status["velocity"], status["eta_human"]) == (0, 0.5, "0 s")


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (None, "unknown"),
        (0.0, "0 s"),
        (0.4, "0 s"),
        (59.6, "1 min"),
        (75, "1 min 15 s"),
        (3600, "1 h"),
        (3725.0, "1 h 2 min"),
        (90_061, "1 d 1 h"),
    ],
)
def test_human_duration_shows_two_units_at_most(seconds: float | None, shown: str) -> None:
    assert human_duration(seconds) == shown


def test_items_at_stage_counts_what_waits_for_each_stage_or_is_in_it() -> None:
    counts = {"PENDING": 3, "PREFLIGHT": 1, "WRITING": 2, "QC": 4, "APPROVED": 5, "FAILED": 9}

    assert items_at_stage(counts) == {"preflight": 4, "writing": 2, "qc": 4, "delivery": 5}
