"""start_batch feeds the lane only when ``submit_batch``'s own feed did not run.

Its queue, ``batch.maintenance``, is polled first, so a second feed there ran on
the process a high batch's first chunk waited for (bench/NOTES.md, "start_batch's
second feed (session 23)"); a batch that fed its lane sends it behind its chunks,
in the lane's own queue (bench/NOTES.md, "A high batch's way to its first stage").
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import redis

from tasks.stages import start_batch
from tasks.submit import submit_batch
from tests.integration.helpers import make_orders

pytestmark = pytest.mark.integration


@pytest.fixture()
def caught(service_env, monkeypatch) -> Any:
    """start_batch messages caught on their way to the broker; the batches cancelled after."""
    sent: list[dict[str, Any]] = []

    def catch(kwargs: dict[str, Any], **options: Any) -> None:
        sent.append({**kwargs, "queue": options.get("queue")})  # None: routed (maintenance)

    monkeypatch.setattr("tasks.stages.start_batch.apply_async", catch)
    yield sent
    from tasks.control import cancel_batch

    for message in sent:
        cancel_batch(message["batch_id"])


def _submit(priority: str = "normal") -> str:
    batch_id = f"start-{uuid.uuid4().hex[:8]}"
    submit_batch(make_orders(3, batch_id), "it", priority, {"batch_id": batch_id})
    return batch_id


def test_a_submission_that_fed_its_lane_says_so(caught, monkeypatch) -> None:
    fed: list[tuple[str, bool]] = []

    def feed(lane: str, *, pooled: bool = False) -> int:
        fed.append((lane, pooled))
        return 1

    monkeypatch.setattr("tasks.feeder.feed", feed)

    batch_id = _submit("high")

    assert fed == [("high", True)]  # it knows its lane has pooled orders: no probe
    assert caught == [
        {"batch_id": batch_id, "priority": "high", "fed": True, "queue": "batch.high"}
    ]


def test_a_submission_whose_feed_failed_leaves_it_to_start_batch(caught, monkeypatch) -> None:
    def unavailable(lane: str, **_: Any) -> int:
        raise redis.ConnectionError("broker gone for a moment")

    monkeypatch.setattr("tasks.feeder.feed", unavailable)

    batch_id = _submit()

    assert caught == [{"batch_id": batch_id, "priority": "normal", "fed": False, "queue": None}]


@pytest.mark.parametrize(
    ("kwargs", "feeds"),
    [({"fed": True}, False), ({"fed": False}, True), ({}, True)],
    ids=["fed-at-submit", "not-fed", "message-from-before-the-flag"],
)
def test_start_batch_feeds_only_when_the_submission_did_not(
    caught, monkeypatch, kwargs: dict[str, Any], feeds: bool
) -> None:
    monkeypatch.setattr("tasks.feeder.feed", lambda lane, **_: 0)  # the batch stays pooled
    batch_id = _submit("low")
    lanes_fed: list[tuple[str, ...]] = []

    def feed(lanes: Any) -> int:
        lanes_fed.append(tuple(lanes))
        return 2

    monkeypatch.setattr("tasks.stages.feed_lanes", feed)

    result = start_batch.run(batch_id=batch_id, priority="low", **kwargs)

    assert lanes_fed == ([("low",)] if feeds else [])
    assert result == {"messages": 2 if feeds else 0}
