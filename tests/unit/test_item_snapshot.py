"""The exporter's order-count snapshots: the first reading, the age, a failed refresh."""

from __future__ import annotations

import time

from metrics.item_snapshot import ItemCountSnapshots


class Readings:
    """Hands out ``[n]`` for the n-th reading; from ``fail_from`` on, raises instead."""

    def __init__(self, fail_from: int = 1_000_000) -> None:
        self.calls, self.fail_from = 0, fail_from

    def __call__(self) -> list[int]:
        self.calls += 1
        if self.calls >= self.fail_from:
            raise ConnectionError("ledger unavailable")
        return [self.calls]


def test_every_call_reads_when_refresh_seconds_is_zero() -> None:
    now = [10.0]
    snapshots = ItemCountSnapshots(Readings(), 0, clock=lambda: now[0])

    first, first_age = snapshots.latest()
    now[0] += 3
    second, second_age = snapshots.latest()

    assert (list(first.rows), first_age, list(second.rows), second_age) == ([1], 0, [2], 0)


def test_the_snapshot_ages_until_it_is_read_again() -> None:
    now = [10.0]
    snapshots = ItemCountSnapshots(Readings(), 3600, clock=lambda: now[0])
    try:
        first, _ = snapshots.latest()
        now[0] += 4.5
        kept, age = snapshots.latest()
    finally:
        snapshots.stop()

    assert kept is first and list(kept.rows) == [1]
    assert age == 4.5


def test_a_failed_background_reading_keeps_the_last_snapshot() -> None:
    readings = Readings(fail_from=2)
    snapshots = ItemCountSnapshots(readings, 0.01)
    try:
        first, _ = snapshots.latest()
        give_up = time.monotonic() + 30
        while readings.calls < 4:  # the thread tried (and failed) several times
            assert time.monotonic() < give_up, "the background thread never read again"
            time.sleep(0.01)
        kept, _ = snapshots.latest()
    finally:
        snapshots.stop()

    assert kept is first and list(kept.rows) == [1]
