"""A lower-lane item waiting for a slot gives way when higher-lane work waits for its worker.

No chunk runs here: the test asks a delivery chunk's run for one item's slots
(``ChunkRun.take``, what each item of an I/O-bound stage does before its call)
while the publisher's five delivery slots are all held, on the real Redis
semaphores. The publisher is this test's own, and the watched queues are this
test's own lists (the session's workers consume the real ones).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

import tasks.yielding as yielding
from metrics.redis_client import redis_client
from pipeline.chunk import ChunkMessage
from tasks.chunk_runner import ChunkRun
from tasks.slots import SlotUser, give_back, take_slots
from tasks.stage_runtime import runtime_for

pytestmark = pytest.mark.integration

#: BATCH_CAP_PER_PUBLISHER's default: delivery's only cap.
PUBLISHER_SLOTS = 5


@pytest.fixture()
def queues(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Each lane's I/O queue, as this test's own Redis lists; removed afterwards."""
    tag = uuid.uuid4().hex[:8]
    names = {lane: f"test-give-way-{tag}.{lane}.io" for lane in ("high", "normal", "low")}
    monkeypatch.setattr(yielding, "lane_queues", lambda lane: (f"unused-{tag}", names[lane]))
    monkeypatch.setattr(yielding, "_consumed_queues", lambda: None)
    monkeypatch.setattr(yielding, "CHECK_INTERVAL_S", 0.0)
    yield names
    redis_client().delete(*names.values())


@pytest.fixture()
def publisher() -> Iterator[str]:
    """A publisher of this test's own whose delivery slots are all held by others."""
    domain = f"gw-{uuid.uuid4().hex[:8]}.example"
    holders = [SlotUser(800_000_000 + n, "delivery", f"gw-c{n}", domain) for n in range(5)]
    client = redis_client()
    assert all(take_slots(client, holders))
    yield domain
    give_back(client, holders)


def _run(priority: str) -> ChunkRun:
    message = ChunkMessage(stage="delivery", batch_id="give-way", item_ids=(1,), priority=priority)
    return ChunkRun(runtime_for("delivery"), message, "task-gw@test", {})


def _waits_for_a_slot(run: ChunkRun, domain: str) -> bool:
    """What ``_attempt_in_slots`` does: take the item's slots, or note it has none."""
    item = SlotUser(800_000_900, "delivery", "gw-waiter", domain)
    took = run.take(item)
    if not took:
        run.no_slot(item.item_id)
    return took


def test_a_low_item_waiting_for_a_slot_gives_way_to_a_waiting_high_message(
    service_env, queues, publisher
) -> None:
    # Given a high delivery chunk waiting in a queue this worker polls
    redis_client().rpush(queues["high"], "a high delivery chunk")
    run = _run("low")

    # When a low item finds its publisher's slots taken
    took = _waits_for_a_slot(run, publisher)

    # Then it stops waiting and goes back to the pool as given way, not as a slot deferral
    assert took is False
    assert run.yielded == [800_000_900]
    assert run.unslotted == []


def test_a_low_item_waits_out_its_slot_wait_when_only_its_own_lane_waits(
    service_env, queues, publisher
) -> None:
    redis_client().rpush(queues["low"], "another low delivery chunk")
    run = _run("low")

    assert _waits_for_a_slot(run, publisher) is False
    assert run.yielded == []
    assert run.unslotted == [800_000_900]


def test_a_high_item_never_gives_way(service_env, queues, publisher) -> None:
    redis_client().rpush(queues["high"], "another high delivery chunk")
    run = _run("high")

    assert _waits_for_a_slot(run, publisher) is False
    assert run.yielded == []
    assert run.unslotted == [800_000_900]


def test_an_item_whose_slot_is_free_runs_whatever_waits(service_env, queues) -> None:
    # Every chunk makes progress: only an item that must wait gives way.
    redis_client().rpush(queues["high"], "a high delivery chunk")
    run = _run("low")
    item = SlotUser(800_000_901, "delivery", "gw-free", f"gw-{uuid.uuid4().hex[:8]}.example")
    try:
        assert run.take(item) is True
        assert run.yielded == []
    finally:
        assert run.give_back(item)
