"""A low chunk of a CPU-bound stage stops early when higher-lane work waits for its process.

The chunk runs in this process on the real ledger, handlers and Redis; the
watched queues are this test's own lists (the session's workers consume the
real ``batch.high``, so a message planted there would be taken at once).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import select

import tasks.yielding as yielding
from ledger.db import transaction
from ledger.models import Item
from metrics.redis_client import redis_client
from pipeline.chunk import ChunkMessage
from tasks.chunk_runner import ChunkReport, run_chunk
from tasks.control import cancel_batch
from tasks.submit import submit_batch
from tests.integration.helpers import make_orders

pytestmark = pytest.mark.integration


@pytest.fixture()
def queues(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Each lane's CPU queue, as this test's own Redis lists; removed afterwards."""
    tag = uuid.uuid4().hex[:8]
    names = {lane: f"test-yield-{tag}.{lane}" for lane in ("high", "normal", "low")}
    monkeypatch.setattr(yielding, "lane_queues", lambda lane: (names[lane], f"{names[lane]}.io"))
    monkeypatch.setattr(yielding, "_consumed_queues", lambda: None)
    monkeypatch.setattr(yielding, "CHECK_INTERVAL_S", 0.0)
    yield names
    redis_client().delete(*names.values())


def _batch(priority: str, monkeypatch: pytest.MonkeyPatch) -> tuple[str, list[int]]:
    # Dispatch is stubbed: this test drives the chunk itself, no worker may take it.
    monkeypatch.setattr("tasks.submit._start", lambda *_: None)
    batch_id = f"yield-{uuid.uuid4().hex[:8]}"
    submit_batch(make_orders(3, batch_id), "it", priority, {"batch_id": batch_id})
    with transaction() as session:
        ids = sorted(session.scalars(select(Item.id).where(Item.batch_id == batch_id)))
    return batch_id, ids


def _run(batch_id: str, ids: list[int], priority: str) -> ChunkReport:
    message = ChunkMessage(
        stage="preflight", batch_id=batch_id, item_ids=tuple(ids), priority=priority
    )
    return run_chunk(message, "task-y@test", reclaim=True)


def _rows(ids: list[int]) -> list[tuple[str, int, str | None]]:
    with transaction() as session:
        query = select(Item.id, Item.state, Item.attempts, Item.lease_owner).where(Item.id.in_(ids))
        rows = {int(i): (str(s), int(n), o) for i, s, n, o in session.execute(query)}
    return [rows[i] for i in ids]


def test_a_low_chunk_hands_back_its_unstarted_items_when_high_work_waits(
    service_env, queues, monkeypatch
) -> None:
    # Given a low preflight chunk of three orders, and a message waiting in the high lane
    batch_id, ids = _batch("low", monkeypatch)
    redis_client().rpush(queues["high"], "a high chunk")
    try:
        # When the chunk runs
        report = _run(batch_id, ids, "low")

        # Then it ran its first order only; the other two are back in the pool,
        # unleased, with their attempt given back
        assert report.succeeded == ids[:1]
        rows = _rows(ids)
        assert rows[0][0] == "WRITING"
        assert rows[1:] == [("PREFLIGHT", 0, None)] * 2
    finally:
        cancel_batch(batch_id)


def test_a_chunk_runs_to_its_end_when_only_its_own_or_lower_lanes_wait(
    service_env, queues, monkeypatch
) -> None:
    # Given a normal chunk, with messages waiting in its own lane and the low lane
    batch_id, ids = _batch("normal", monkeypatch)
    redis_client().rpush(queues["normal"], "another normal chunk")
    redis_client().rpush(queues["low"], "a low chunk")
    try:
        report = _run(batch_id, ids, "normal")

        # Then every order ran
        assert report.succeeded == ids
    finally:
        cancel_batch(batch_id)


def test_a_high_chunk_never_stops_early(service_env, queues, monkeypatch) -> None:
    batch_id, ids = _batch("high", monkeypatch)
    redis_client().rpush(queues["high"], "another high chunk")
    try:
        assert _run(batch_id, ids, "high").succeeded == ids
    finally:
        cancel_batch(batch_id)
