"""``paced``: a call holds its ``conc=N`` slot only while it runs, and wastes no token."""

from __future__ import annotations

import pytest

from pipeline.errors import RateLimited
from pipeline.pacing import SLOT_POLL_SECONDS, paced


class ScriptedCallGate:
    """A gate whose slot answers and token waits come from scripts, recording every call."""

    def __init__(self, holds: list[bool], waits: list[float] | None = None) -> None:
        self.holds = holds
        self.waits = waits or []
        self.events: list[str] = []
        self.held: set[str] = set()

    def wait_seconds(self, service: str, key: str = "") -> float:
        wait = self.waits.pop(0) if self.waits else 0.0
        self.events.append("token" if wait == 0 else f"wait {wait}")
        return wait

    def hold(self, service: str, key: str, holder: str, lease_seconds: float) -> bool:
        granted = self.holds.pop(0) if self.holds else True
        self.events.append("hold" if granted else "full")
        if granted:
            self.held.add(holder)
        return granted

    def release(self, service: str, key: str, holder: str) -> None:
        self.events.append("release")
        self.held.discard(holder)


def test_the_slot_is_held_for_the_block_and_given_back_after_it() -> None:
    gate = ScriptedCallGate(holds=[True])
    with paced(gate, "ahrefs", max_wait=1.0, lease_seconds=30, sleep=lambda _: None):
        assert len(gate.held) == 1
        gate.events.append("call")
    assert gate.events == ["hold", "token", "call", "release"]
    assert not gate.held


def test_a_failing_call_still_gives_its_slot_back() -> None:
    gate = ScriptedCallGate(holds=[True])
    with (
        pytest.raises(TimeoutError),
        paced(gate, "ahrefs", max_wait=1.0, lease_seconds=30, sleep=lambda _: None),
    ):
        raise TimeoutError("the service did not answer")
    assert gate.events[-1] == "release"
    assert not gate.held


def test_a_full_service_is_asked_again_until_a_slot_frees() -> None:
    slept: list[float] = []
    gate = ScriptedCallGate(holds=[False, False, True])
    with paced(gate, "ahrefs", max_wait=1.0, lease_seconds=30, sleep=slept.append):
        pass
    assert slept == [SLOT_POLL_SECONDS, SLOT_POLL_SECONDS]
    assert gate.events == ["full", "full", "hold", "token", "release"]


def test_no_slot_within_max_wait_defers_without_spending_a_token() -> None:
    gate = ScriptedCallGate(holds=[False] * 100)
    with (
        pytest.raises(RateLimited, match="concurrency bound") as raised,
        paced(gate, "ahrefs", max_wait=0.2, lease_seconds=30, sleep=lambda _: None),
    ):
        pytest.fail("the block must not run without a slot")
    assert "token" not in gate.events
    assert raised.value.code == "ahrefs_rate_gate"


def test_a_spent_daily_quota_defers_and_gives_the_slot_back() -> None:
    gate = ScriptedCallGate(holds=[True], waits=[3600.0])
    with (
        pytest.raises(RateLimited) as raised,
        paced(gate, "ahrefs", max_wait=2.0, lease_seconds=30, sleep=lambda _: None),
    ):
        pytest.fail("the block must not run without a token")
    assert raised.value.retry_after == 3600.0
    assert gate.events == ["hold", "wait 3600.0", "release"]
    assert not gate.held
