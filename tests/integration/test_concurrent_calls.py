"""A chunk of an I/O-bound stage runs its items' calls concurrently, and loses nothing.

These call the chunk runner in this process with a stand-in writer (a sleep
stands for the LLM's answer time, so overlap is certain); the ledger, its
leases, the Redis concurrency slots and the thread pool are the real ones.
Overlap is read from the spans the ledger stores per item, not from a clock.
"""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import select

from ledger.db import transaction
from ledger.models import Item, StageOutput
from metrics.keys import slot_key
from metrics.redis_client import redis_client
from pipeline.audit import max_overlap
from pipeline.chunk import ChunkMessage
from pipeline.errors import PermanentError
from pipeline.settings import get_settings
from tasks.chunk_runner import run_chunk
from tasks.limits.semaphore import holders
from tasks.slots import SlotUser, give_back, take_slots
from tasks.submit import submit_batch
from tests.integration.helpers import make_orders
from tests.integration.stage_patch import patch_stage

pytestmark = pytest.mark.integration

ORDERS = 6


@pytest.fixture()
def written(service_env, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, list[int]]]:
    """A batch whose orders passed preflight and wait for writing."""
    monkeypatch.setattr("tasks.submit._start", lambda *_: None)
    batch_id = f"io-{uuid.uuid4().hex[:8]}"
    submit_batch(make_orders(ORDERS, batch_id), "it", "normal", {"batch_id": batch_id})
    with transaction() as session:
        ids = sorted(session.scalars(select(Item.id).where(Item.batch_id == batch_id)))
    message = ChunkMessage(stage="preflight", batch_id=batch_id, item_ids=tuple(ids))
    assert run_chunk(message, "preflight-task@test").succeeded == ids
    yield batch_id, ids
    from tasks.control import cancel_batch

    cancel_batch(batch_id)


@pytest.fixture(autouse=True)
def writing_alone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """These tests look at the writer's calls: the chunk does not run QC after them.

    (A fused chunk would judge the stand-in articles and send them back to WRITING;
    tests/integration/test_fused_qc.py covers fusing.)
    """
    monkeypatch.setenv("BATCH_FUSE_STAGES", "false")
    get_settings.cache_clear()
    yield
    monkeypatch.delenv("BATCH_FUSE_STAGES")
    get_settings.cache_clear()


@pytest.fixture()
def io_concurrency(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("BATCH_IO_CONCURRENCY", "3")
    get_settings.cache_clear()
    yield
    monkeypatch.delenv("BATCH_IO_CONCURRENCY")
    get_settings.cache_clear()


class SlowWriter:
    """Sleeps like an LLM call; fails the orders named in ``failing``; counts calls at once."""

    def __init__(self, seconds: float, failing: frozenset[str] = frozenset()) -> None:
        self.seconds, self.failing = seconds, failing
        self.lock, self.now, self.most = threading.Lock(), 0, 0

    def __call__(self, order: Any, previous: Any, context: Any) -> dict[str, Any]:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            time.sleep(self.seconds)
            if order.order_id in self.failing:
                raise PermanentError(f"the writer refused {order.order_id}")
            return {"title": "t", "html": "<p>x</p>", "word_count": 1, "writer": "slow"}
        finally:
            with self.lock:
                self.now -= 1


def _write(batch: tuple[str, list[int]], task: str = "writing-task"):
    message = ChunkMessage(stage="writing", batch_id=batch[0], item_ids=tuple(batch[1]))
    return run_chunk(message, f"{task}@test", reclaim=True)


def _rows(item_ids: list[int]) -> dict[int, tuple[str, int]]:
    with transaction() as session:
        query = select(Item.id, Item.state, Item.attempts).where(Item.id.in_(item_ids))
        return {int(i): (str(state), int(n)) for i, state, n in session.execute(query)}


def _writing_spans(item_ids: list[int]) -> list[tuple[Any, Any]]:
    with transaction() as session:
        query = select(StageOutput.started_at, StageOutput.finished_at).where(
            StageOutput.item_id.in_(item_ids), StageOutput.stage == "writing"
        )
        return [(started, finished) for started, finished in session.execute(query)]


def test_a_writing_chunk_runs_its_calls_at_once_up_to_the_bound(
    written, io_concurrency, monkeypatch
) -> None:
    writer = SlowWriter(0.4)
    patch_stage(monkeypatch, "writing", handle=writer)

    report = _write(written)

    # Then every order moved on, at most BATCH_IO_CONCURRENCY (3) calls ran at once,
    # and the ledger's own per-item spans show them overlapping
    assert report.succeeded == written[1]
    assert writer.most == 3
    assert 2 <= max_overlap(_writing_spans(written[1])) <= 3
    assert {state for state, _ in _rows(written[1]).values()} == {"QC"}


def test_a_failing_call_fails_only_its_order(written, io_concurrency, monkeypatch) -> None:
    with transaction() as session:
        failing = str(session.scalar(select(Item.order_id).where(Item.id == written[1][1])))
    patch_stage(monkeypatch, "writing", handle=SlowWriter(0.1, frozenset({failing})))

    report = _write(written)

    assert report.failed == [written[1][1]]
    assert sorted(report.succeeded) == [i for i in written[1] if i != written[1][1]]


def test_a_soft_time_limit_keeps_finished_calls_and_charges_no_order_that_never_started(
    written, io_concurrency, monkeypatch
) -> None:
    # Given three calls at once of one second each, and the soft limit at half a second
    patch_stage(monkeypatch, "writing", handle=SlowWriter(1.0))

    def soft_limit(signum: int, frame: Any) -> None:
        raise SoftTimeLimitExceeded("soft limit")

    previous = signal.signal(signal.SIGALRM, soft_limit)
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    try:
        report = _write(written)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

    # Then the three calls under way finished within the grace and moved on, and the
    # three that never started are retried without paying an attempt
    rows = _rows(written[1])
    started, waiting = written[1][:3], written[1][3:]
    assert sorted(report.succeeded) == started
    assert sorted(report.retry_ids) == waiting
    assert [rows[i] for i in started] == [("QC", 0)] * 3
    assert [rows[i] for i in waiting] == [("WRITING", 0)] * 3


def test_without_celerys_time_limit_the_chunk_keeps_its_own_soft_limit(
    written, io_concurrency, monkeypatch
) -> None:
    # Given no signal at all (Celery's threads pool, the I/O worker, enforces no time
    # limit), three calls at once of three seconds each, a soft limit of one second
    # and a hard one that leaves no grace for the calls under way
    patch_stage(monkeypatch, "writing", handle=SlowWriter(3.0))
    monkeypatch.setenv("BATCH_TASK_SOFT_TIME_LIMIT", "1")
    monkeypatch.setenv("BATCH_TASK_TIME_LIMIT", "2")
    get_settings.cache_clear()
    try:
        report = _write(written)
    finally:
        monkeypatch.delenv("BATCH_TASK_SOFT_TIME_LIMIT")
        monkeypatch.delenv("BATCH_TASK_TIME_LIMIT")
        get_settings.cache_clear()

    # Then the chunk ended at its deadline: nothing moved on, every order is retried,
    # the three that never started without paying an attempt, and nothing failed
    rows = _rows(written[1])
    waiting = written[1][3:]
    assert report.succeeded == [] and report.failed == []
    assert sorted(report.retry_ids) == written[1]
    assert {rows[i][0] for i in written[1]} == {"WRITING"}
    assert [rows[i][1] for i in waiting] == [0, 0, 0]
    # ...while the three calls under way run on in their threads, each keeps its slot
    # (the cap counts it) until it ends, and their retry waits for the writer's timeout
    running = {f"{item_id}:writing" for item_id in written[1][:3]}
    assert running <= set(holders(redis_client(), slot_key("global")))
    assert report.retry_delay >= get_settings().writer_timeout_seconds
    deadline = time.monotonic() + 30
    while running & set(holders(redis_client(), slot_key("global"))):
        assert time.monotonic() < deadline, "the calls' threads never gave their slots back"
        time.sleep(0.1)


@pytest.fixture()
def one_slot_each(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """One writing slot per customer, and a short wait for one."""
    monkeypatch.setenv("BATCH_CAP_PER_CUSTOMER", "1")
    monkeypatch.setenv("BATCH_SLOT_WAIT_SECONDS", "0.2")
    get_settings.cache_clear()
    yield
    monkeypatch.delenv("BATCH_CAP_PER_CUSTOMER")
    monkeypatch.delenv("BATCH_SLOT_WAIT_SECONDS")
    get_settings.cache_clear()


#: The chunk's task: its items' lease owner while it holds them.
OWNER = "writing-task@test"


def _pool_row(item_id: int) -> tuple[str, int, str | None, Any]:
    with transaction() as session:
        query = select(Item.state, Item.attempts, Item.lease_owner, Item.queued_at)
        state, attempts, owner, queued = session.execute(query.where(Item.id == item_id)).one()
    return str(state), int(attempts), owner, queued


def test_an_item_without_a_slot_is_back_in_the_pool_while_its_chunk_still_calls(
    written, io_concurrency, one_slot_each, monkeypatch
) -> None:
    # Given a chunk of two items: the first's customer has its one slot free, the
    # second's customer's slot is held by someone else
    tag = uuid.uuid4().hex[:8]
    first, second = written[1][:2]
    with transaction() as session:
        for item_id, customer in ((first, f"free-{tag}"), (second, f"busy-{tag}")):
            session.get_one(Item, item_id).customer_id = customer
    foreign = SlotUser(900_000_001, "writing", f"busy-{tag}", "elsewhere.example")
    assert take_slots(redis_client(), [foreign]) == [True]
    seen: list[tuple[str, int, str | None, Any]] = []

    def writer(order: Any, previous: Any, context: Any) -> dict[str, Any]:
        # The first item's call, long after the second gave up its slot wait (0.2 s)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and not seen:
            row = _pool_row(second)
            if row[2] != OWNER:
                seen.append(row)
            time.sleep(0.05)
        return {"title": "t", "html": "<p>x</p>", "word_count": 1, "writer": "slow"}

    patch_stage(monkeypatch, "writing", handle=writer)
    try:
        message = ChunkMessage(stage="writing", batch_id=written[0], item_ids=(first, second))
        report = run_chunk(message, OWNER)
    finally:
        give_back(redis_client(), [foreign])

    # Then the chunk gave the second back while the first's call still ran, not only
    # when it committed. (The session's workers feed every running batch, so a feeder
    # may have queued it again, or a worker claimed it, by the time it was looked at.)
    assert len(seen) == 1
    state, attempts, owner, queued = seen[0]
    assert owner != OWNER
    if owner is None and queued is None:  # as the chunk left it: its attempt refunded
        assert (state, attempts) == ("WRITING", 0)
    assert report.succeeded == [first] and report.unslotted == 1
