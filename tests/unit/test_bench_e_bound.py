"""bench.e_bound: the greedy dispatcher keeps both caps and fills every slot it may."""

from __future__ import annotations

import pytest

from bench.e_bound import ideal_run, ranked_customers


def test_one_customer_runs_waves_of_its_cap() -> None:
    bound = ideal_run(["a"] * 100, latency_s=2.0, jitter=0.0, cap_global=50, cap_per_customer=10)

    assert bound.seconds == pytest.approx(20.0)  # 10 waves of 10 calls
    assert max(count for _, count in bound.steps) == 10
    assert bound.in_flight_mean(0.0, 20.0) == pytest.approx(10.0)


def test_the_global_cap_bounds_many_customers_and_the_last_one_drains_alone() -> None:
    # Best first: 6 customers of 10 orders, then one with 30 at the lowest score.
    customers = [f"c{n}" for n in range(6) for _ in range(10)] + ["late"] * 30

    bound = ideal_run(customers, latency_s=1.0, jitter=0.0, cap_global=50, cap_per_customer=10)

    assert max(count for _, count in bound.steps) == 50
    # Second 1: the 10 orders of c5 and 10 of "late" (its cap), then "late" alone at 10.
    assert bound.seconds == pytest.approx(4.0)
    assert bound.in_flight_mean(2.0, 4.0) == pytest.approx(10.0)


def test_e_orders_are_ranked_best_first_with_every_order_once() -> None:
    ranked = ranked_customers(200)

    assert len(ranked) == 200
    assert len(set(ranked)) > 3  # several customers, as E submits them
