"""What Flower and the logs show of a chunk: its kwargsrepr, its result, its bound ids."""

from __future__ import annotations

import ast
import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from metrics.logs import configure_logging, route_stdlib_logging, say_as_json
from metrics.task_context import bind_task, bound_order, task_fields, unbind_task
from pipeline.chunk import ChunkMessage, chunk_kwargsrepr
from pipeline.errors import ErrorCategory
from pipeline.outcomes import Done, Failed, ItemOutcome, Rewrite, summarise
from pipeline.retry_policy import RetryStrategy
from tasks.chunk_result import ITEMS_FAILED, LISTED_FAILURES, chunk_result
from tasks.chunk_runner import ChunkReport


def _message(items: int = 3000) -> ChunkMessage:
    return ChunkMessage(
        stage="writing", batch_id="b-1", item_ids=tuple(range(1, items + 1)), priority="high"
    )


def test_a_chunks_kwargsrepr_names_batch_stage_lane_and_size_not_its_ids() -> None:
    shown = _message().task_repr()
    assert ast.literal_eval(shown) == {
        "batch_id": "b-1",
        "stage": "writing",
        "lane": "high",
        "items": 3000,
    }
    assert len(shown) < 100


def test_the_publish_hook_repr_matches_and_refuses_a_malformed_message() -> None:
    kwargs = _message(5).task_kwargs()
    assert chunk_kwargsrepr("writing", kwargs) == _message(5).task_repr()
    assert chunk_kwargsrepr("writing", {"batch_id": "b"}) is None
    assert chunk_kwargsrepr("writing", ["not", "kwargs"]) is None


def _failed(item_id: int, code: str = "target_domain") -> Failed:
    return Failed(
        item_id, "InvalidInput", "bad", ErrorCategory.PERMANENT, RetryStrategy.NONE, code=code
    )


def test_a_chunk_with_failed_orders_says_so_and_names_them() -> None:
    outcomes: list[ItemOutcome] = [Done(1, {}), _failed(2), Done(3, {})]
    report = ChunkReport(
        claimed=3, summary=summarise(outcomes, {1, 2, 3}), failed_orders={2: "order-2"}
    )
    assert chunk_result(report) == {
        "outcome": ITEMS_FAILED,
        "claimed": 3,
        "ok": 2,
        "failed": 1,
        "failed_orders": [
            {"order_id": "order-2", "class": "InvalidInput", "code": "target_domain"}
        ],
        "unlisted": 0,
    }


def test_a_writing_chunk_that_ran_qc_says_what_qc_decided_and_names_its_failures() -> None:
    # Given a writing chunk of three that ran QC itself: one approved, one sent back
    # for a rewrite, one rejected for good
    written = summarise([Done(1, {}), Done(2, {}), Done(3, {})], {1, 2, 3})
    judged: list[ItemOutcome] = [Done(1, {}), Rewrite(2, "short"), _failed(3, "too_short")]
    report = ChunkReport(
        claimed=3,
        summary=written,
        failed_orders={3: "order-3"},
        fused_stage="qc",
        fused=summarise(judged, {1, 2, 3}),
    )

    # Then the writer's counts stay, QC's are beside them, and its failure is listed
    assert chunk_result(report) == {
        "outcome": ITEMS_FAILED,
        "claimed": 3,
        "ok": 3,
        "failed": 0,
        "fused": {"stage": "qc", "ok": 1, "failed": 1, "rewrites": 1},
        "failed_orders": [
            {"order_id": "order-3", "class": "InvalidInput", "code": "too_short", "stage": "qc"}
        ],
        "unlisted": 0,
    }


def test_a_clean_chunk_result_is_ok_without_a_list() -> None:
    report = ChunkReport(claimed=1, summary=summarise([Done(1, {})], {1}))
    assert chunk_result(report) == {"outcome": "OK", "claimed": 1, "ok": 1, "failed": 0}


def test_a_result_lists_a_few_failures_and_counts_the_rest_within_celerys_repr_limit() -> None:
    ids = range(1, 41)
    orders = {i: f"a-rather-long-order-identifier-{i:06d}" for i in ids}
    report = ChunkReport(
        claimed=40, summary=summarise([_failed(i) for i in ids], set(ids)), failed_orders=orders
    )
    result = chunk_result(report)
    assert len(result["failed_orders"]) == LISTED_FAILURES
    assert result["unlisted"] == 40 - LISTED_FAILURES
    assert len(repr(result)) < 1024  # Celery's resultrepr_maxsize: nothing is cut off


def test_a_stage_task_binds_its_chunk_and_other_tasks_only_their_ids() -> None:
    kwargs = _message(7).task_kwargs()
    assert task_fields("t-1", "batchline.stage.writing", kwargs) == {
        "task_id": "t-1",
        "task": "batchline.stage.writing",
        "batch_id": "b-1",
        "stage": "writing",
        "chunk_size": 7,
        "lane": "high",
    }
    assert task_fields("t-2", "batchline.maintenance.sweep", None) == {
        "task_id": "t-2",
        "task": "batchline.maintenance.sweep",
    }
    assert task_fields("t-3", "batchline.stage.qc", {"item_ids": "junk"})["stage"] == "qc"


@pytest.fixture()
def json_root_log() -> Iterator[io.StringIO]:
    """The root logger rendering JSON into a buffer; the previous set-up restored after."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging.getLogger("httpx").level)
    stream = io.StringIO()
    route_stdlib_logging("INFO", "json")
    root.handlers[0].setStream(stream)  # type: ignore[attr-defined]
    try:
        yield stream
    finally:
        root.handlers, root.level = saved[:2]
        logging.getLogger("httpx").setLevel(saved[2])
        unbind_task()


def test_a_stdlib_line_inside_a_task_is_json_with_the_bound_ids(json_root_log) -> None:
    bind_task("t-1", "batchline.stage.writing", _message(2).task_kwargs())
    with bound_order(5, "order-5"):
        logging.getLogger("celery.app.trace").info("Task %s succeeded", "x")
    unbind_task()
    logging.getLogger("kombu").warning("after the task")

    inside, after = (json.loads(line) for line in json_root_log.getvalue().splitlines())
    assert inside["event"] == "Task x succeeded"
    assert (inside["batch_id"], inside["order_id"], inside["item_id"]) == ("b-1", "order-5", 5)
    assert (inside["logger"], inside["level"]) == ("celery.app.trace", "info")
    assert "batch_id" not in after and after["logger"] == "kombu"


def test_celerys_received_line_from_the_main_process_carries_the_task_id(json_root_log) -> None:
    data = {"id": "t-9", "name": "batchline.stage.qc"}
    logging.getLogger("celery.worker.strategy").info("Task received", extra={"data": data})
    line = json.loads(json_root_log.getvalue())
    assert (line["task_id"], line["task"]) == ("t-9", "batchline.stage.qc")


def test_httpxs_line_per_request_is_left_out_but_its_warnings_are_not(json_root_log) -> None:
    logging.getLogger("httpx").info('HTTP Request: POST http://llm/v1 "HTTP/1.1 200 OK"')
    logging.getLogger("httpx").warning("a warning")
    lines = [json.loads(line) for line in json_root_log.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["a warning"]


def test_at_debug_httpxs_requests_are_logged_too(json_root_log) -> None:
    route_stdlib_logging("DEBUG", "json")
    root = logging.getLogger()
    stream = io.StringIO()
    root.handlers[0].setStream(stream)  # type: ignore[attr-defined]
    logging.getLogger("httpx").info("HTTP Request: POST")
    assert json.loads(stream.getvalue())["event"] == "HTTP Request: POST"


def test_a_shutdown_notice_is_one_json_line() -> None:
    stream = io.StringIO()
    say_as_json("worker: Warm shutdown (MainProcess)", stream)
    line = json.loads(stream.getvalue())
    assert line["event"] == "worker: Warm shutdown (MainProcess)"
    assert stream.getvalue().count("\n") == 1


def test_structlog_lines_merge_the_bound_ids() -> None:
    saved = structlog.get_config()  # a CLI test before may have left it at WARNING
    configure_logging("DEBUG", "json")
    bind_task("t-1", "batchline.stage.writing", _message(2).task_kwargs())
    try:
        with structlog.testing.capture_logs(
            processors=[structlog.contextvars.merge_contextvars]
        ) as logs:
            structlog.get_logger().info("item.failed")
    finally:
        unbind_task()
        structlog.configure(**saved)
    assert logs[0]["batch_id"] == "b-1" and logs[0]["task_id"] == "t-1"


def test_the_publish_hook_shortens_a_retried_chunks_kwargsrepr() -> None:
    # Celery's autoretry re-sends the chunk's kwargs with no kwargsrepr of its own.
    from celery_app import _short_chunk_kwargsrepr

    kwargs = _message(40).task_kwargs()
    headers = {"kwargsrepr": repr(kwargs)}
    _short_chunk_kwargsrepr(
        sender="batchline.stage.writing", headers=headers, body=((), kwargs, {})
    )
    assert headers["kwargsrepr"] == _message(40).task_repr()

    other = {"kwargsrepr": "{'batch_id': 'b-1'}"}
    _short_chunk_kwargsrepr(sender="batchline.start_batch", headers=other, body=((), {}, {}))
    assert other == {"kwargsrepr": "{'batch_id': 'b-1'}"}


def test_an_item_thread_sees_its_tasks_ids_and_its_own_order() -> None:
    # I/O-bound stages run items in threads: their lines must still name batch and order.
    from ledger.items import ClaimedItem
    from tasks.chunk_threads import run_concurrently

    seen: dict[int, dict[str, object]] = {}

    def attempt(item: ClaimedItem) -> None:
        with bound_order(item.item_id, item.document["order_id"]):
            seen[item.item_id] = structlog.contextvars.get_contextvars()

    items = [ClaimedItem(i, {"order_id": f"o-{i}"}, 0) for i in (1, 2, 3)]
    bind_task("t-1", "batchline.stage.writing", _message(3).task_kwargs())
    try:
        run_concurrently(items, attempt, workers=3, max_retries=3, grace=0)
    finally:
        unbind_task()
    assert {i: (s["batch_id"], s["order_id"]) for i, s in seen.items()} == {
        1: ("b-1", "o-1"),
        2: ("b-1", "o-2"),
        3: ("b-1", "o-3"),
    }
