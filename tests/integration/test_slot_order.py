"""Strict lane order at the concurrency slots, on the real Redis semaphores.

The semaphores' script does the standing back (``acquire`` with the waiter sets
of the lanes above as blockers). The chunk test runs no chunk: it asks a low
writing chunk's run for one item's slots (``ChunkRun.take``, what each item does
before its call) while a high item waits for the same customer's slots. The
customers and publishers are each test's own, and the high waiters name no
global semaphore, so the session's workers (which share it) are never held back.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest
import redis

from metrics.keys import slot_key, slot_waiters_key, slot_wake_key
from metrics.redis_client import redis_client
from pipeline.chunk import ChunkMessage
from tasks.chunk_runner import ChunkRun
from tasks.limits.semaphore import HANDOFF_MS, SlotClaim, acquire, release, waiter_member
from tasks.slot_order import blockers, pause_until_handed, waiter_sets, waiting
from tasks.slots import SlotUser, give_back
from tasks.stage_runtime import runtime_for

pytestmark = pytest.mark.integration

LEASE = 30.0


@pytest.fixture
def tag(redis_scope: str) -> str:
    """A customer name of this test's own; its semaphores are gone afterwards."""
    return redis_scope


def _claim(item: int, customer: str, publisher_limit: int = 0) -> SlotClaim:
    # The global cap off: the session's workers share that semaphore.
    return SlotClaim(
        holder=f"{item}:delivery",
        keys=(
            slot_key("global"),
            slot_key("customer", customer),
            slot_key("publisher", f"{customer}.example"),
        ),
        limits=(0, 10, publisher_limit),
    )


def _try(client: redis.Redis, lane: str, claim: SlotClaim) -> bool:
    """Whether ``claim`` of ``lane`` gets its slots (given straight back)."""
    granted = acquire(client, [claim], LEASE, blockers(lane))[0]
    release(client, [claim])
    return granted


def test_a_lower_lane_stands_back_while_a_higher_item_waits_for_its_semaphore(tag) -> None:
    client = redis_client()
    with waiting(client, "high", _claim(1, tag), 30):
        assert not _try(client, "low", _claim(2, tag))
        assert not _try(client, "normal", _claim(3, tag))
        assert _try(client, "high", _claim(4, tag))  # its own lane: no
    # Once the high item has its slot (or gave up), nobody stands back
    assert _try(client, "low", _claim(2, tag))


def test_only_a_shared_semaphore_makes_a_lower_item_stand_back(tag) -> None:
    client, other = redis_client(), f"{tag}-other"
    with waiting(client, "high", _claim(1, tag), 30):
        assert _try(client, "low", _claim(2, other))
    with waiting(client, "high", _claim(1, tag, publisher_limit=5), 30):
        shares_publisher = SlotClaim(
            holder="2:delivery",
            keys=(slot_key("customer", other), slot_key("publisher", f"{tag}.example")),
            limits=(10, 5),
        )
        assert not _try(client, "low", shares_publisher)


def test_a_normal_waiter_holds_back_low_only(tag) -> None:
    client = redis_client()
    with waiting(client, "normal", _claim(1, tag), 30):
        assert not _try(client, "low", _claim(2, tag))
        assert _try(client, "high", _claim(3, tag))


def test_a_waiter_that_died_blocks_nobody_once_its_wait_is_over(tag) -> None:
    client = redis_client()
    key, member = slot_waiters_key("high"), waiter_member(_claim(1, tag))
    client.zadd(key, {member: time.time() + 0.5})
    try:
        assert not _try(client, "low", _claim(2, tag))
        time.sleep(0.6)
        assert _try(client, "low", _claim(2, tag))
    finally:
        client.zrem(key, member)


def test_a_claim_standing_back_takes_no_slot_anywhere(tag) -> None:
    client = redis_client()
    blocked = SlotClaim(
        holder="7:delivery",
        keys=(slot_key("customer", tag), slot_key("publisher", f"{tag}-free.example")),
        limits=(10, 5),
    )
    with waiting(client, "high", _claim(1, tag), 30):
        assert acquire(client, [blocked], LEASE, blockers("low")) == [False]
    assert client.zcard(slot_key("publisher", f"{tag}-free.example")) == 0


def _low_run(item_id: int) -> ChunkRun:
    message = ChunkMessage(
        stage="writing", batch_id="slot-order", item_ids=(item_id,), priority="low"
    )
    return ChunkRun(runtime_for("writing"), message, "task-so@test", {})


def test_a_low_item_takes_no_slot_a_high_item_waits_for(service_env) -> None:
    tag = uuid.uuid4().hex[:8]
    customer = f"so-{tag}"
    low = SlotUser(900_000_001, "writing", customer, f"{tag}.example")
    high = SlotClaim(
        holder="900000002:writing", keys=(slot_key("customer", customer),), limits=(10,)
    )
    client = redis_client()
    try:
        # Given a high item of the same customer waiting for its slots (which are free)
        with waiting(client, "high", high, 30):
            # Then the low item, after its wait at the slot, has not taken one
            assert _low_run(low.item_id).take(low) is False
        # Once the high item stopped waiting, the low item takes its slot
        assert _low_run(low.item_id).take(low) is True
    finally:
        give_back(client, [low])


# Slots handed over at a release: the best-ranked waiter that can start now gets each.


def _full(client: redis.Redis, tag: str, holders: int = 1) -> SlotClaim:
    """Fill ``tag``'s customer semaphore with a cap of ``holders``; the last claim."""
    claims = [
        SlotClaim(holder=f"{n}:writing", keys=(slot_key("customer", tag),), limits=(holders,))
        for n in range(1, holders + 1)
    ]
    assert acquire(client, claims, LEASE) == [True] * holders
    return claims[-1]


def _waiter(item: int, tag: str, cap: int = 1, extra: tuple[str, int] | None = None) -> SlotClaim:
    keys, limits = [slot_key("customer", tag)], [cap]
    if extra:
        keys.append(extra[0])
        limits.append(extra[1])
    return SlotClaim(holder=f"{item}:writing", keys=tuple(keys), limits=tuple(limits))


def _holds(client: redis.Redis, claim: SlotClaim) -> bool:
    return all(client.zscore(key, claim.holder) is not None for key in claim.capped())


def test_a_release_hands_its_slot_to_the_best_ranked_waiter_not_the_first(tag) -> None:
    client = redis_client()
    holder = _full(client, tag)
    worse, better = _waiter(20, tag), _waiter(21, tag)
    try:
        # Given the worse-ranked item waiting first (a big customer's: fair rank 10,050)
        with (
            waiting(client, "normal", worse, 30, rank=(5.0, 10_050)),
            waiting(client, "normal", better, 30, rank=(5.0, 150)),
        ):
            # When the holder's call ends
            assert release(client, [holder], waiter_sets()) == [better.holder]
            # Then the slot is the better-ranked item's, held for it until it polls
            assert _holds(client, better) and not _holds(client, worse)
            assert acquire(client, [worse], LEASE, blockers("normal")) == [False]
            assert acquire(client, [better], LEASE, blockers("normal")) == [True]
    finally:
        release(client, [holder, worse, better])


def test_the_waiter_handed_a_slot_is_woken_from_its_pause(tag) -> None:
    client = redis_client()
    holder = _full(client, tag)
    handed, passed = _waiter(25, tag), _waiter(26, tag)
    try:
        with (
            waiting(client, "normal", handed, 30, rank=(5.0, 101)),
            waiting(client, "normal", passed, 30, rank=(5.0, 102)),
        ):
            # Nobody was handed anything yet: the pause runs out unwoken
            assert pause_until_handed(client, handed.holder, 0.05) is False
            assert release(client, [holder], waiter_sets()) == [handed.holder]
            # The release's push ends the handed waiter's pause (30 s) at once
            assert pause_until_handed(client, handed.holder, 30.0) is True
            assert client.llen(slot_wake_key(passed.holder)) == 0
    finally:
        release(client, [holder, handed, passed])


@pytest.mark.parametrize(
    ("first", "second", "winner"),
    [
        # (lane, (score, fair_rank)) of the two waiters, in the order they started waiting
        (("normal", (3.0, 101)), ("normal", (9.0, 20_000)), 1),  # score before fair rank
        (("low", (9.0, 101)), ("high", (1.0, 50_000)), 1),  # a higher lane before any rank
        (("high", (5.0, 151)), ("high", (5.0, 150)), 1),  # equal score: the fair rank
    ],
)
def test_the_slot_goes_by_lane_then_score_then_fair_rank(tag, first, second, winner) -> None:
    client = redis_client()
    holder = _full(client, tag)
    waiters = [_waiter(30, tag), _waiter(31, tag)]
    try:
        with (
            waiting(client, first[0], waiters[0], 30, rank=first[1]),
            waiting(client, second[0], waiters[1], 30, rank=second[1]),
        ):
            assert release(client, [holder], waiter_sets()) == [waiters[winner].holder]
    finally:
        release(client, [holder, *waiters])


def test_a_waiter_that_cannot_start_now_is_passed_over(tag) -> None:
    client = redis_client()
    holder = _full(client, tag)
    other = f"{tag}-pub"
    blocked_elsewhere = _full(client, other)  # the best waiter's publisher is full
    best = _waiter(40, tag, extra=(slot_key("customer", other), 1))
    next_best = _waiter(41, tag)
    try:
        with (
            waiting(client, "normal", best, 30, rank=(5.0, 101)),
            waiting(client, "normal", next_best, 30, rank=(5.0, 102)),
        ):
            # The slot is not kept idle for a waiter that could not use it
            assert release(client, [holder], waiter_sets()) == [next_best.holder]
            assert not _holds(client, best)
    finally:
        release(client, [holder, blocked_elsewhere, best, next_best])


def test_a_slot_nobody_waits_for_is_left_free_and_others_are_untouched(tag) -> None:
    client = redis_client()
    holder = _full(client, tag)
    elsewhere = _waiter(60, f"{tag}-other")
    with waiting(client, "normal", elsewhere, 30, rank=(9.0, 1)):
        # A waiter for other semaphores gets nothing from this release
        assert release(client, [holder], waiter_sets()) == []
    assert client.zcard(slot_key("customer", tag)) == 0
    assert client.zcard(slot_key("customer", f"{tag}-other")) == 0


def test_a_handed_slot_nobody_takes_comes_back_within_the_handoff(tag) -> None:
    client = redis_client()
    holder = _full(client, tag)
    gone = _waiter(70, tag)
    try:
        with waiting(client, "normal", gone, 30):
            assert release(client, [holder], waiter_sets()) == [gone.holder]
        # The waiter died before its next poll: its slot's lease is HANDOFF_MS, not a full one
        expiry_ms = client.zscore(slot_key("customer", tag), gone.holder)
        now_ms = time.time() * 1000
        assert expiry_ms is not None and expiry_ms <= now_ms + HANDOFF_MS + 500
    finally:
        release(client, [holder, gone])


def test_a_waiting_item_is_handed_the_slot_a_release_frees(service_env) -> None:
    tag = uuid.uuid4().hex[:8]
    customer = f"so-{tag}"
    client = redis_client()
    holder = SlotClaim(
        holder="900000010:writing", keys=(slot_key("customer", customer),), limits=(10,)
    )
    # Given all ten of the customer's slots held by others
    others = [
        SlotClaim(holder=f"9000001{n:02d}:writing", keys=holder.keys, limits=(10,))
        for n in range(10)
    ]
    assert all(acquire(client, others, LEASE))
    waiter = SlotUser(900_000_011, "writing", customer, f"{tag}.example", rank=(5.0, 101))
    run = _low_run(waiter.item_id)
    try:
        # When one of them ends while the item waits, the release hands the item that slot
        handed: list[str] = []
        timer = threading.Timer(
            0.3, lambda: handed.extend(release(client, [others[0]], waiter_sets()))
        )
        timer.start()
        assert run.take(waiter) is True
        timer.join()
        assert handed == ["900000011:writing"]
        assert client.zscore(slot_key("customer", customer), "900000011:writing") is not None
    finally:
        give_back(client, [waiter])
        release(client, others)
