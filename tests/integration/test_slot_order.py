"""Strict lane order at the concurrency slots, on the real Redis semaphores.

The semaphores' script does the standing back (``acquire`` with the waiter sets
of the lanes above as blockers). The chunk test runs no chunk: it asks a low
writing chunk's run for one item's slots (``ChunkRun.take``, what each item does
before its call) while a high item waits for the same customer's slots. The
customers and publishers are each test's own, and the high waiters name no
global semaphore, so the session's workers (which share it) are never held back.
"""

from __future__ import annotations

import time
import uuid

import pytest
import redis

from metrics.keys import slot_key, slot_waiters_key
from metrics.redis_client import redis_client
from pipeline.chunk import ChunkMessage
from tasks.chunk_runner import ChunkRun
from tasks.limits.semaphore import SlotClaim, acquire, release, waiter_member
from tasks.slot_order import blockers, waiting
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
