"""Lower lanes' items pause while a higher lane's chunk runs in the same process."""

from __future__ import annotations

import threading

import pytest

from tasks.lane_gate import MAX_PAUSE_S, LaneGate


@pytest.mark.parametrize(
    ("running", "lane", "busy"),
    [
        ("high", "low", True),
        ("high", "normal", True),
        ("normal", "low", True),
        ("low", "low", False),  # its own lane never holds it back
        ("low", "high", False),
        ("normal", "high", False),
        ("high", "high", False),
        ("high", "unknown", False),
    ],
)
def test_only_a_higher_lane_holds_a_lane_back(running, lane, busy) -> None:
    gate = LaneGate()
    with gate.running(running):
        assert gate.busy_above(lane) is busy
    assert gate.busy_above(lane) is False


def test_nothing_running_above_means_no_pause() -> None:
    gate = LaneGate()
    with gate.running("low"):
        assert gate.pause("low", 10.0) < 1.0


def test_a_low_item_waits_until_the_high_chunk_ends() -> None:
    gate = LaneGate()
    high_started, high_may_end = threading.Event(), threading.Event()
    ended_before_low_went_on: list[bool] = []

    def high_chunk() -> None:
        with gate.running("high"):
            high_started.set()
            high_may_end.wait(30)

    thread = threading.Thread(target=high_chunk)
    thread.start()
    try:
        assert high_started.wait(30)
        low = threading.Thread(
            target=lambda: ended_before_low_went_on.append(
                gate.pause("low", 30.0) >= 0 and not gate.busy_above("low")
            )
        )
        low.start()
        low.join(0.2)
        assert low.is_alive()  # still paused: the high chunk runs
        high_may_end.set()
        low.join(30)
        assert ended_before_low_went_on == [True]
    finally:
        high_may_end.set()
        thread.join(30)


def test_a_pause_is_bounded_by_its_limit() -> None:
    gate = LaneGate()
    with gate.running("high"):
        waited = gate.pause("low", 0.05)
        assert gate.busy_above("low")  # it went on although high still runs
    assert 0.05 <= waited < MAX_PAUSE_S


def test_a_pause_never_exceeds_the_longest_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    import tasks.lane_gate as lane_gate

    monkeypatch.setattr(lane_gate, "MAX_PAUSE_S", 0.05)
    gate = LaneGate()
    with gate.running("normal"):
        assert gate.pause("low", 3600.0) < 1.0


def test_a_chunk_that_raises_stops_counting() -> None:
    gate = LaneGate()
    with pytest.raises(RuntimeError), gate.running("high"):
        raise RuntimeError("boom")
    assert not gate.busy_above("low")
