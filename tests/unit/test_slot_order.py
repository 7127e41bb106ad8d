"""Strict lane order at the slots: who registers as a waiter, and which sets block a lane.

Whether a waiter holds a lower lane back is the semaphores' script's work, tested
on the real Redis in ``tests/integration/test_slot_order.py``.
"""

from __future__ import annotations

import fakeredis
import pytest

from metrics.keys import slot_key, slot_waiters_key
from tasks.limits.semaphore import SlotClaim, waiter_member
from tasks.slot_order import blockers, waiting


def _claim(item: int, customer: str, publisher_limit: int = 0) -> SlotClaim:
    return SlotClaim(
        holder=f"{item}:delivery",
        keys=(slot_key("global"), slot_key("customer", customer), slot_key("publisher", "p.com")),
        limits=(0, 10, publisher_limit),  # the global cap off: only the scopes named here
    )


@pytest.fixture()
def client() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(server=fakeredis.FakeServer())


def test_each_lane_stands_back_for_the_lanes_above_it_only() -> None:
    assert blockers("high") == ()
    assert blockers("normal") == (slot_waiters_key("high"),)
    assert blockers("low") == (slot_waiters_key("high"), slot_waiters_key("normal"))


def test_a_waiter_is_registered_with_its_capped_keys_while_it_waits(client) -> None:
    claim = _claim(1, "acme", publisher_limit=5)
    with waiting(client, "high", claim, 30, rank=(7.0, 112)):
        members = client.zrange(slot_waiters_key("high"), 0, -1)
        assert [m.decode() for m in members] == [waiter_member(claim, (7.0, 112))]
        assert waiter_member(claim, (7.0, 112)) == (
            f"1:delivery|{slot_key('customer', 'acme')}=10"
            f"|{slot_key('publisher', 'p.com')}=5|#7.0:112"
        )
    assert client.zcard(slot_waiters_key("high")) == 0


def test_the_lowest_lane_registers_too_so_a_release_can_hand_it_a_slot(client) -> None:
    # Nobody stands back for it (blockers), but its waiters are ranked among themselves.
    with waiting(client, "low", _claim(1, "acme"), 30):
        assert client.zcard(slot_waiters_key("low")) == 1
    assert client.zcard(slot_waiters_key("low")) == 0


def test_a_waiter_that_died_is_cleared_out_by_the_next(client) -> None:
    key = slot_waiters_key("high")
    client.zadd(key, {waiter_member(_claim(1, "acme")): 1.0})  # its wait ended long ago
    with waiting(client, "high", _claim(5, "globex"), 30):
        assert client.zcard(key) == 1


def test_an_uncapped_claim_never_waits(client) -> None:
    uncapped = SlotClaim(holder="1:qc", keys=(slot_key("global"),), limits=(0,))
    with waiting(client, "high", uncapped, 30):
        assert client.zcard(slot_waiters_key("high")) == 0
