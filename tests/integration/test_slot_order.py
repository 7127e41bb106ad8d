"""Strict lane order at the concurrency slots, on the real Redis semaphores.

The chunk runs nothing here: the test asks a low writing chunk's run for one
item's slots (``ChunkRun.take``, what each item does before its call) while a
high item waits for the same customer's slots. The customer and publisher are
this test's own, and the high waiter names only the customer's semaphore, so the
session's workers (which share the global semaphore) are never held back.
"""

from __future__ import annotations

import uuid

import pytest

from metrics.keys import slot_key
from metrics.redis_client import redis_client
from pipeline.chunk import ChunkMessage
from tasks.chunk_runner import ChunkRun
from tasks.limits.semaphore import SlotClaim
from tasks.slot_order import waiting
from tasks.slots import SlotUser, give_back
from tasks.stage_runtime import runtime_for

pytestmark = pytest.mark.integration


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
