"""Strict lane order at the concurrency slots: a lower lane never takes what a higher waits for."""

from __future__ import annotations

from types import SimpleNamespace

import fakeredis
import pytest

import tasks.slot_order as slot_order
from metrics.keys import slot_key, slot_waiters_key
from tasks.limits.semaphore import SlotClaim
from tasks.slot_order import higher_waiter, waiting


def _claim(item: int, customer: str, publisher_limit: int = 0) -> SlotClaim:
    return SlotClaim(
        holder=f"{item}:delivery",
        keys=(slot_key("global"), slot_key("customer", customer), slot_key("publisher", "p.com")),
        limits=(0, 10, publisher_limit),  # the global cap off: only the scopes named here
    )


@pytest.fixture()
def client() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(server=fakeredis.FakeServer())


def test_a_low_item_stands_back_while_a_high_item_waits_for_its_semaphore(client) -> None:
    with waiting(client, "high", _claim(1, "acme"), 30):
        assert higher_waiter(client, "low", _claim(2, "acme"))
        assert higher_waiter(client, "normal", _claim(3, "acme"))
        assert not higher_waiter(client, "high", _claim(4, "acme"))  # its own lane: no
    # Once the high item has its slot (or gave up), nobody stands back
    assert not higher_waiter(client, "low", _claim(2, "acme"))
    assert client.zcard(slot_waiters_key("high")) == 0


def test_only_a_shared_semaphore_makes_a_lower_item_stand_back(client) -> None:
    with waiting(client, "high", _claim(1, "acme"), 30):
        assert not higher_waiter(client, "low", _claim(2, "globex"))
    with waiting(client, "high", _claim(1, "acme", publisher_limit=5), 30):
        assert higher_waiter(client, "low", _claim(2, "globex", publisher_limit=5))


def test_a_normal_waiter_holds_back_low_only(client) -> None:
    with waiting(client, "normal", _claim(1, "acme"), 30):
        assert higher_waiter(client, "low", _claim(2, "acme"))
        assert not higher_waiter(client, "high", _claim(3, "acme"))


def test_the_lowest_lane_never_registers(client) -> None:
    with waiting(client, "low", _claim(1, "acme"), 30):
        assert client.zcard(slot_waiters_key("low")) == 0


def test_a_waiter_that_died_blocks_nobody_once_its_wait_is_over(client, monkeypatch) -> None:
    now = 1_000_000.0
    monkeypatch.setattr(slot_order, "time", SimpleNamespace(time=lambda: now))
    client.zadd(slot_waiters_key("high"), {slot_order._member(_claim(1, "acme")): now + 2})
    assert higher_waiter(client, "low", _claim(2, "acme"))
    now += 3
    assert not higher_waiter(client, "low", _claim(2, "acme"))
    # The next waiter clears it out of the set
    with waiting(client, "high", _claim(5, "globex"), 30):
        assert client.zcard(slot_waiters_key("high")) == 1


def test_an_uncapped_claim_neither_waits_nor_blocks(client) -> None:
    uncapped = SlotClaim(holder="1:qc", keys=(slot_key("global"),), limits=(0,))
    with waiting(client, "high", uncapped, 30):
        assert client.zcard(slot_waiters_key("high")) == 0
    assert not higher_waiter(client, "low", uncapped)
