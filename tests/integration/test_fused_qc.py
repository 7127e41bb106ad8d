"""Writing chunks run QC themselves (``BATCH_FUSE_STAGES``), on real servers and workers.

What is observable of a fused boundary: an item's writing output and its QC report
are written by the same statement, so PostgreSQL stamps both rows with the same
transaction id (``xmin``); a QC chunk of its own would record its report in a
later transaction. With ``BATCH_FUSE_STAGES=false`` no QC report shares its
writing output's transaction.

The rewrite case is the sample catalog's microblog order (``orders_built_to_fail``:
``length``): no article fits its 15-30 words, so QC sends it back twice and then
rejects it for good (``QC_MAX_REWRITES`` = 2): three writing runs, three reports.

The first test uses the session's workers (fused or not as the session's
environment says). The second runs a worker of its own per mode, on a Redis
database of its own, with delivery scheduled twelve hours away: orders stop at
APPROVED, the batch stays open, and its live progress hash (not yet rebuilt from
the ledger, as a finalized batch's is) must agree with the ledger.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import text

from cli.sample_orders import orders_built_to_fail
from cli.workers import ALL_LANES, spawn_worker, stop_workers
from ledger.db import transaction
from metrics.progress import read_progress
from pipeline.chunk import ChunkMessage
from pipeline.settings import get_settings
from tests.integration import test_concurrent_calls
from tests.integration.helpers import (
    assert_each_delivered_once,
    item_states,
    make_orders,
    submit_in_child,
    wait_for_final,
    wait_until,
)
from tests.integration.stage_patch import patch_stage

pytestmark = pytest.mark.integration

#: test_concurrent_calls' batch of preflighted orders waiting for writing, run in this process
written = test_concurrent_calls.written

FUSE_REDIS_DB = 2
ORDERS = 12

_OUTPUTS = text(
    """
    SELECT i.order_id, o.stage, o.ok, coalesce((o.output->>'rewrite')::boolean, false),
           o.xmin::text, o.started_at, o.finished_at
    FROM stage_outputs o JOIN items i ON i.id = o.item_id
    WHERE i.batch_id = :b AND o.stage IN ('writing', 'qc')
    ORDER BY o.id
    """
)


def _outputs(batch_id: str) -> list[Any]:
    with transaction() as session:
        return list(session.execute(_OUTPUTS, {"b": batch_id}))


def _length_order(tag: str) -> dict[str, Any]:
    return next(o for o in orders_built_to_fail(tag) if o["order_id"].endswith("-fail-length"))


def _assert_boundaries(batch_id: str, *, fused: bool) -> None:
    """Each QC report shares its writing output's transaction exactly when fused."""
    rows = _outputs(batch_id)
    writes = {(order, xmin) for order, stage, *_, xmin, _s, _f in _rows(rows, "writing")}
    reports = _rows(rows, "qc")
    assert reports, "no QC report stored"
    for order, _stage, _ok, _rewrite, xmin, started, _finished in reports:
        assert ((order, xmin) in writes) is fused, (order, fused)
        assert started is not None  # QC's own span, not the chunk's
    # one report per writing run, the same number of each per order
    per_stage = Counter((order, stage) for order, stage, *_ in rows)
    for order in {order for order, _stage in per_stage}:
        assert per_stage[(order, "writing")] == per_stage[(order, "qc")], order


def _rows(rows: list[Any], stage: str) -> list[Any]:
    return [row for row in rows if row[1] == stage]


def _assert_microblog_rewritten_twice_then_failed(batch_id: str, order_id: str) -> None:
    rows = [row for row in _outputs(batch_id) if row[0] == order_id]
    assert [(stage, ok, rewrite) for _o, stage, ok, rewrite, *_ in rows] == [
        ("writing", True, False),
        ("qc", False, True),
        ("writing", True, False),
        ("qc", False, True),
        ("writing", True, False),
        ("qc", False, False),
    ]
    with transaction() as session:
        state, error = session.execute(
            text("SELECT state, error_class FROM items WHERE order_id = :o"), {"o": order_id}
        ).one()
    assert (state, error) == ("FAILED", "QualityRejected")


def test_a_batch_ends_once_each_with_qc_recorded_at_its_boundary(workers) -> None:
    # Given a batch of valid orders and the microblog order QC cannot pass
    from tasks import batch_status, submit_batch

    tag = uuid.uuid4().hex[:8]
    batch_id = f"fused-{tag}"
    microblog = _length_order(tag)
    orders = [*make_orders(ORDERS, batch_id), microblog]

    # When the session's workers run it
    submit_batch(orders, "it-project", "normal", {"batch_id": batch_id})
    assert wait_for_final([batch_id], timeout=180) == {batch_id: "PARTIAL"}

    # Then every valid order is delivered once, the microblog failed in QC after two rewrites
    states = item_states(batch_id)
    assert Counter(states.values()) == {"DELIVERED": ORDERS, "FAILED": 1}
    assert_each_delivered_once(batch_id)
    _assert_microblog_rewritten_twice_then_failed(batch_id, microblog["order_id"])
    # and QC's reports were recorded at the writing boundary exactly when fusing is on
    _assert_boundaries(batch_id, fused=get_settings().batch_fuse_stages)
    status = batch_status(batch_id)
    assert status["stages"]["qc"] == {"done": ORDERS, "failed": 1}
    assert (status["completed"], status["failed"]) == (ORDERS, 1)


def _cancel(batch_id: str) -> None:
    from tasks.control import ControlRefused, cancel_batch

    with contextlib.suppress(ControlRefused, LookupError):  # ended, or never submitted
        cancel_batch(batch_id)


def _ledger_figures(batch_id: str) -> dict[str, int]:
    """What the live hash must say, counted from the ledger's states and outputs."""
    rows = _outputs(batch_id)
    states = Counter(item_states(batch_id).values())
    return {
        "writing_done": sum(1 for row in _rows(rows, "writing") if row[2]),
        # an order past QC has passed it (it may have been delivered by now)
        "qc_done": states["APPROVED"] + states["DELIVERED"],
        "qc_failed": sum(1 for row in _rows(rows, "qc") if not row[2] and not row[3]),
        "rewrites": sum(1 for row in _rows(rows, "qc") if row[3]),
        "failed": states["FAILED"],
    }


def _live_figures(client: redis.Redis, batch_id: str) -> dict[str, int]:
    progress = read_progress(client, batch_id)
    names = ("writing_done", "qc_done", "qc_failed", "rewrites", "failed")
    return {name: int(progress.get(name, 0)) for name in names}


@pytest.mark.parametrize("fuse", ["true", "false"])
def test_live_progress_counts_what_the_ledger_recorded(
    fuse: str, service_env: dict[str, str], isolated_redis: Callable[[int], str], tmp_path: Path
) -> None:
    # Given a worker of its own with delivery's window twelve hours away (orders stop at
    # APPROVED, the batch stays open) and fusing on or off
    run = (datetime.now(UTC) + timedelta(hours=12)).strftime("%H:%M")
    redis_url = isolated_redis(FUSE_REDIS_DB)
    env = {
        **service_env,
        "REDIS_URL": redis_url,
        "BATCH_FUSE_STAGES": fuse,
        "BATCH_SCHEDULE_DELIVERY": run,
        "BATCH_SCHEDULE_DELIVERY_WINDOW": "60s",
    }
    tag = uuid.uuid4().hex[:8]
    batch_id = f"fused-live-{fuse}-{tag}"
    microblog = _length_order(tag)
    orders = [*make_orders(ORDERS, batch_id), microblog]
    worker = spawn_worker(
        ALL_LANES, concurrency=2, name=f"fuse-{fuse}", env=env, log_path=tmp_path / "w.log"
    )
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        # When the batch runs up to delivery's window
        submit_in_child([{"id": batch_id, "priority": "normal", "orders": orders}], env, tmp_path)
        waiting = {"APPROVED", "DELIVERED", "FAILED"}
        wait_until(lambda: set(item_states(batch_id).values()) <= waiting, timeout=180)

        # Then the live counters agree with the ledger (the hash is bumped just after
        # the chunk's commit, so poll until it has caught up)
        def agree() -> bool:
            return _live_figures(client, batch_id) == _ledger_figures(batch_id)

        with contextlib.suppress(TimeoutError):
            wait_until(agree, timeout=30, interval=0.2)
        assert _live_figures(client, batch_id) == _ledger_figures(batch_id)
        figures = _ledger_figures(batch_id)
        assert (figures["rewrites"], figures["qc_failed"], figures["failed"]) == (2, 1, 1)
        assert figures["qc_done"] == ORDERS
        _assert_microblog_rewritten_twice_then_failed(batch_id, microblog["order_id"])
        _assert_boundaries(batch_id, fused=fuse == "true")
    finally:
        _cancel(batch_id)
        stop_workers([worker])
        client.close()


def test_a_chunk_without_time_left_leaves_qc_to_its_own_chunks(
    service_env: dict[str, str], isolated_redis: Callable[[int], str], tmp_path: Path
) -> None:
    # Given fusing on, a soft limit of 11 s (fused work stops 10 s before it) and a writer
    # answering in 1.5 s: every writing chunk is past its fusing time when its calls return
    env = {
        **service_env,
        "REDIS_URL": isolated_redis(FUSE_REDIS_DB),
        "BATCH_FUSE_STAGES": "true",
        "BATCH_TASK_SOFT_TIME_LIMIT": "11",
        "BATCH_TASK_TIME_LIMIT": "30",
        "WRITER_OFFLINE_LATENCY_MS": "1500",
    }
    batch_id = f"fused-late-{uuid.uuid4().hex[:8]}"
    worker = spawn_worker(
        ALL_LANES, concurrency=2, name="fuse-late", env=env, log_path=tmp_path / "w.log"
    )
    try:
        # When a batch runs
        orders = make_orders(6, batch_id)
        submit_in_child([{"id": batch_id, "priority": "normal", "orders": orders}], env, tmp_path)
        assert wait_for_final([batch_id], timeout=180) == {batch_id: "COMPLETED"}
    finally:
        _cancel(batch_id)
        stop_workers([worker])

    # Then QC's own chunks judged every article, and every order was delivered once
    assert set(item_states(batch_id).values()) == {"DELIVERED"}
    assert_each_delivered_once(batch_id)
    _assert_boundaries(batch_id, fused=False)


def test_what_fused_qc_cannot_judge_before_its_margin_waits_for_qc_chunks(
    written, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.chunk_runner import run_chunk
    from tasks.handlers import handle_qc

    # Given fusing on, a soft limit of 14 s (fused QC may start items for the first 4 s of
    # the chunk) and a QC that takes a second an article: six cannot all be judged in time
    def slow_qc(order: Any, previous: Any, context: Any) -> dict[str, Any]:
        time.sleep(1.0)
        return handle_qc(order, previous, context)

    patch_stage(monkeypatch, "qc", handle=slow_qc)
    monkeypatch.setenv("BATCH_FUSE_STAGES", "true")
    monkeypatch.setenv("BATCH_TASK_SOFT_TIME_LIMIT", "14")
    get_settings.cache_clear()
    batch_id, ids = written
    try:
        # When one writing chunk runs them
        message = ChunkMessage(stage="writing", batch_id=batch_id, item_ids=tuple(ids))
        report = run_chunk(message, "writing-task@test")
    finally:
        monkeypatch.undo()  # the settings, and QC's own handler for the rest of the test
        get_settings.cache_clear()

    # Then every article was written; QC judged the first ones and approved them in the
    # writer's statement, and left the rest in QC, with the writer's output only
    states = {int(i): s for i, s in _item_rows(ids)}
    judged = sorted(report.fused.succeeded)
    left = [i for i in ids if i not in judged]
    assert report.succeeded == ids and report.fused_stage == "qc"
    assert judged and left, (judged, left)
    assert judged == ids[: len(judged)]  # in item order, up to the margin
    assert {states[i] for i in judged} == {"APPROVED"}
    assert {states[i] for i in left} == {"QC"}
    # And QC's own chunk takes the rest as it would without fusing
    qc = run_chunk(ChunkMessage(stage="qc", batch_id=batch_id, item_ids=tuple(left)), "qc@test")
    assert sorted(qc.succeeded) == left
    assert {s for _i, s in _item_rows(ids)} == {"APPROVED"}


def _item_rows(ids: list[int]) -> list[Any]:
    with transaction() as session:
        query = text("SELECT id, state FROM items WHERE id = ANY(:ids)")
        return list(session.execute(query, {"ids": ids}))
