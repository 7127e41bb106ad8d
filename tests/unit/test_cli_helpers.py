"""CLI helpers that need no servers: worker queues, sample orders and the demo's split."""

from __future__ import annotations

import sys
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from celery_app import IO_LANES, LANES, MAINTENANCE_QUEUE, RECOVERY_QUEUE
from cli.demo import split_counts
from cli.sample_orders import sample_orders
from cli.workers import ALL_LANES, WORK_LANES, default_workers, queues_for, worker_command
from pipeline.manifest import validate_submission

# --- queues_for -----------------------------------------------------------------------

HIGH, NORMAL, LOW = LANES  # the app's lanes, best first
#: The queue the app declares for each lane a worker can be given.
QUEUES = {"maintenance": MAINTENANCE_QUEUE, "recovery": RECOVERY_QUEUE, **LANES}


@pytest.mark.parametrize(
    ("lanes", "queues"),
    [
        ([HIGH, NORMAL, LOW], [HIGH, NORMAL, LOW]),
        ([LOW, NORMAL, HIGH], [HIGH, NORMAL, LOW]),
        ([LOW, HIGH], [HIGH, LOW]),
        ([NORMAL, LOW], [NORMAL, LOW]),
        ([HIGH], [HIGH]),
        ((LOW,), [LOW]),
        ([LOW, LOW, HIGH], [HIGH, LOW]),
    ],
)
def test_queues_are_always_in_strict_priority_order(lanes: list[str], queues: list[str]) -> None:
    assert queues_for(lanes, "cpu") == ",".join(LANES[lane] for lane in queues)
    assert queues_for(lanes, "io") == ",".join(IO_LANES[lane] for lane in queues)
    assert queues_for(lanes) == ",".join(f"{LANES[lane]},{IO_LANES[lane]}" for lane in queues)


@settings(deadline=None, database=None)
@given(lanes=st.lists(st.sampled_from(ALL_LANES), min_size=1, max_size=6))
def test_any_order_of_lanes_gives_housekeeping_then_high_normal_low(lanes: list[str]) -> None:
    queues = queues_for(lanes, "cpu").split(",")

    order = ("maintenance", "recovery", *LANES)
    assert queues == [QUEUES[lane] for lane in order if lane in lanes]


@settings(deadline=None, database=None)
@given(lanes=st.lists(st.sampled_from(ALL_LANES), min_size=1, max_size=6))
def test_a_worker_of_every_queue_polls_each_lanes_io_queue_right_after_it(
    lanes: list[str],
) -> None:
    queues = queues_for(lanes).split(",")

    order = ("maintenance", "recovery", *LANES)
    io = {lane: [IO_LANES[lane]] for lane in IO_LANES}
    assert queues == [
        q for lane in order if lane in lanes for q in [QUEUES[lane], *io.get(lane, [])]
    ]


def test_an_io_worker_without_a_work_lane_is_rejected() -> None:
    with pytest.raises(ValueError, match="I/O worker needs a work lane"):
        queues_for(["maintenance", "recovery"], "io")


@pytest.mark.parametrize(
    ("lanes", "named"),
    [(["urgent"], "urgent"), (["high", "HIGH"], "HIGH"), (["high", "z", "a"], "a, z")],
)
def test_an_unknown_lane_raises_value_error_naming_it(lanes: list[str], named: str) -> None:
    with pytest.raises(ValueError, match=f"unknown lane\\(s\\): {named}$"):
        queues_for(lanes)


def test_an_empty_list_of_lanes_is_rejected() -> None:
    with pytest.raises(ValueError):
        queues_for([])


# --- worker_command -------------------------------------------------------------------


def test_worker_command_runs_celery_on_the_ordered_queues() -> None:
    command = worker_command(["low", "high"], 3, "edge")

    assert command[:6] == [sys.executable, "-m", "celery", "-A", "celery_app", "worker"]
    assert command[command.index("-Q") + 1] == "batch.high,batch.high.io,batch.low,batch.low.io"
    assert "-P" not in command  # prefork
    assert command[command.index("-c") + 1] == "3"
    assert command[command.index("-n") + 1] == "edge@%h"
    assert "--without-gossip" in command
    assert "--without-mingle" in command
    assert all(isinstance(part, str) for part in command)


def test_an_io_worker_command_runs_a_threads_pool_on_the_io_queues() -> None:
    command = worker_command(["low", "maintenance", "high"], 8, "io", kind="io")

    assert command[command.index("-Q") + 1] == "batch.high.io,batch.low.io"
    assert command[command.index("-P") + 1] == "threads"
    assert command[command.index("-c") + 1] == "8"


def test_batchline_worker_runs_processes_for_cpu_work_and_a_threads_worker_for_io() -> None:
    cpu, io = default_workers(ALL_LANES, 2, 8, "w")

    assert (cpu.name, cpu.concurrency, cpu.kind, tuple(cpu.lanes)) == ("w", 2, "cpu", ALL_LANES)
    assert (io.name, io.concurrency, io.kind) == ("w-io", 8, "io")
    # Between them every queue of the lanes is consumed, each by one of them.
    both = queues_for(cpu.lanes, cpu.kind).split(",") + queues_for(io.lanes, io.kind).split(",")
    assert sorted(both) == sorted(queues_for(ALL_LANES).split(","))


def test_several_threads_workers_share_the_io_queues_under_their_own_names() -> None:
    cpu, *io = default_workers(ALL_LANES, 2, 8, "w", io_processes=3)

    assert cpu.kind == "cpu"
    assert [(w.name, w.concurrency, w.kind) for w in io] == [
        ("w-io", 8, "io"),
        ("w-io2", 8, "io"),
        ("w-io3", 8, "io"),
    ]


@pytest.mark.parametrize(
    ("lanes", "io_threads"), [(ALL_LANES, 0), (("maintenance",), 8), (WORK_LANES, 0)]
)
def test_without_io_threads_or_work_lanes_one_worker_takes_every_queue(
    lanes: tuple[str, ...], io_threads: int
) -> None:
    assert default_workers(lanes, 3, io_threads, "w") == [("w", lanes, 3, "all")]


def test_worker_command_rejects_an_unknown_lane() -> None:
    with pytest.raises(ValueError, match="bulk"):
        worker_command(["high", "bulk"], 1, "w")


# --- sample orders --------------------------------------------------------------------


def test_sample_orders_gives_the_requested_number_of_valid_orders() -> None:
    orders = sample_orders(200)

    submission = validate_submission(orders, "demo-project", "normal", None, max_items=100_000)

    assert len(submission.documents) == 200


@pytest.mark.parametrize("count", [0, 1, 3, 57])
def test_sample_orders_gives_exactly_n_orders(count: int) -> None:
    assert len(sample_orders(count)) == count


def test_sample_order_ids_are_numbered_under_the_tag() -> None:
    orders = sample_orders(3, tag="run-42")

    assert [order["order_id"] for order in orders] == [
        "run-42-000001",
        "run-42-000002",
        "run-42-000003",
    ]


def _without_deadline(orders: list[dict[str, object]]) -> list[dict[str, object]]:
    return [{k: v for k, v in order.items() if k != "deadline"} for order in orders]


def test_the_same_seed_gives_the_same_orders_apart_from_the_moving_deadline() -> None:
    first = sample_orders(50, seed=11)
    second = sample_orders(50, seed=11)

    assert [o["order_id"] for o in first] == [o["order_id"] for o in second]
    assert _without_deadline(first) == _without_deadline(second)


def test_another_seed_gives_other_orders_with_the_same_ids() -> None:
    first = sample_orders(50, seed=1)
    second = sample_orders(50, seed=2)

    assert [o["order_id"] for o in first] == [o["order_id"] for o in second]
    assert _without_deadline(first) != _without_deadline(second)


def test_200_sample_orders_cover_english_swedish_and_german() -> None:
    languages = Counter(order["language"] for order in sample_orders(200))

    assert {"en", "sv", "de"} <= set(languages)


def test_sample_deadlines_carry_a_time_zone() -> None:
    submission = validate_submission(sample_orders(20), "p", "low", None, max_items=20)

    for order in submission.documents:
        assert order.deadline is not None
        assert order.deadline.utcoffset() is not None


# --- demo split -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "expected"),
    [
        (200, [("high", 20), ("normal", 100), ("low", 80)]),
        (3, [("high", 1), ("normal", 2), ("low", 0)]),
        (10, [("high", 1), ("normal", 5), ("low", 4)]),
    ],
)
def test_split_counts_follows_the_demo_shares(total: int, expected: list[tuple[str, int]]) -> None:
    assert split_counts(total) == expected


@settings(deadline=None, database=None)
@given(total=st.integers(1, 100_000))
def test_split_counts_sums_to_the_total_and_high_gets_at_least_one(total: int) -> None:
    plan = split_counts(total)

    assert [priority for priority, _ in plan] == list(LANES)
    assert sum(count for _, count in plan) == total
    assert plan[0][1] >= 1
    assert all(count >= 0 for _, count in plan)
