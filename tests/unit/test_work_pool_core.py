"""The pure parts of the feeder and the caps: chunk planning, fair ranks, pacing, the audit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pipeline.audit import max_overlap, max_overlap_by
from pipeline.chunking import plan_chunks
from pipeline.errors import RateLimited
from pipeline.pacing import pace
from pipeline.priority import fair_ranks

T0 = datetime(2026, 11, 24, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_plan_chunks_fills_each_key_in_rank_order_up_to_its_size() -> None:
    ranked = [("b1", "qc", 1), ("b1", "pre", 2), ("b1", "qc", 3), ("b1", "qc", 4), ("b2", "pre", 5)]
    chunks = plan_chunks(ranked, key=lambda r: (r[0], r[1]), size=lambda k: 2, max_chunks=3)
    assert [[r[2] for r in chunk] for chunk in chunks] == [[1, 3], [2], [4]]


def test_plan_chunks_keeps_filling_open_chunks_when_no_new_one_may_open() -> None:
    ranked = [(k % 2, k) for k in range(10)]
    chunks = plan_chunks(ranked, key=lambda r: r[0], size=lambda k: 3, max_chunks=2)
    assert [[r[1] for r in chunk] for chunk in chunks] == [[0, 2, 4], [1, 3, 5]]


def test_plan_chunks_of_nothing_is_nothing() -> None:
    assert plan_chunks([], key=lambda r: r, size=lambda k: 5, max_chunks=4) == []


def test_fair_ranks_count_from_the_customers_size_in_manifest_order() -> None:
    # a has 3 orders (ranks 4, 5, 6), b has 2 (3, 4), c has 1 (2)
    assert fair_ranks(["a", "a", "b", "a", "c", "b"]) == [4, 5, 3, 6, 2, 4]


def tie_break_order(manifests: list[list[str]]) -> list[str]:
    """Customers in the order the feeder hands out equal-score orders of these batches."""
    ranked = [
        (rank, batch, position, customer)
        for batch, customers in enumerate(manifests)
        for position, (customer, rank) in enumerate(
            zip(customers, fair_ranks(customers), strict=True)
        )
    ]
    return [customer for *_, customer in sorted(ranked)]


def test_a_small_customer_goes_before_a_big_one_submitted_earlier() -> None:
    # Given a big customer's batch, then a small customer's batch
    order = tie_break_order([["big"] * 50, ["small"] * 5])
    # Then every one of the small customer's orders goes before the big one's first
    assert order == ["small"] * 5 + ["big"] * 50


def test_customers_of_similar_size_alternate_after_the_smaller_ones_lead() -> None:
    order = tie_break_order([["a"] * 4, ["b"] * 6])
    # a: ranks 5..8; b: ranks 7..12 -> a, a, then alternating, then b's rest
    assert order == ["a", "a", "a", "b", "a", "b", "b", "b", "b", "b"]


def test_customers_of_equal_size_go_round_robin() -> None:
    assert tie_break_order([["a"] * 3, ["b"] * 3]) == ["a", "b"] * 3


class ScriptedGate:
    """Answers wait times from a script, as the Redis token bucket would."""

    def __init__(self, waits: list[float]) -> None:
        self.waits = waits
        self.asked: list[tuple[str, str]] = []

    def wait_seconds(self, service: str, key: str = "") -> float:
        self.asked.append((service, key))
        return self.waits.pop(0) if self.waits else 0.0


def test_pace_sleeps_through_short_waits_then_goes() -> None:
    slept: list[float] = []
    gate = ScriptedGate([0.4, 0.5, 0.0])
    pace(gate, "writer", max_wait=2.0, sleep=slept.append)
    assert slept == [0.4, 0.5]
    assert gate.asked == [("writer", "")] * 3


def test_pace_defers_with_retry_after_when_the_wait_is_too_long() -> None:
    slept: list[float] = []
    with pytest.raises(RateLimited) as raised:
        pace(ScriptedGate([1.5, 1.0]), "delivery", "news.example", max_wait=2.0, sleep=slept.append)
    assert slept == [1.5]
    assert raised.value.retry_after == 1.0
    assert "delivery rate limit" in str(raised.value)


def test_max_overlap_counts_open_spans_and_back_to_back_spans_do_not_overlap() -> None:
    spans = [(at(0), at(10)), (at(5), at(15)), (at(10), at(20)), (at(6), at(7))]
    assert max_overlap(spans) == 3
    assert max_overlap([(at(0), at(1)), (at(1), at(2))]) == 1
    assert max_overlap([]) == 0


def test_max_overlap_by_scope() -> None:
    spans = [("a", at(0), at(10)), ("a", at(1), at(2)), ("b", at(0), at(10))]
    assert max_overlap_by(spans) == {"a": 2, "b": 1}
