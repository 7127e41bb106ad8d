"""Cache warming's pure plan, and the customer cache's generations against fakeredis.

The customer cache must never serve a profile older than the last catalog import:
these tests drive it with an in-memory Redis and a stand-in for the ledger read.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import fakeredis
import pytest
import redis

from cache_warming import customers as customer_cache
from metrics.keys import customer_cache_key
from pipeline.catalog import CustomerProfile
from pipeline.warming import WarmPlan, plan_warming


def order(customer: str, domain: str, target: str) -> dict[str, Any]:
    return {"customer_id": customer, "publisher_domain": domain, "target_url": target}


# --- the plan -------------------------------------------------------------------------------


def test_the_plan_names_every_customer_and_publisher_once_in_first_seen_order() -> None:
    documents = [
        order("c2", "News.example", "https://a.example/1"),
        order("c1", "news.example", "https://a.example/2"),
        order("c2", "blog.example", "https://a.example/1"),
    ]

    plan = plan_warming(documents)

    assert plan.customers == ("c2", "c1")
    assert plan.domains == ("news.example", "blog.example")
    assert plan.history_customers == ("c2", "c1")
    assert plan.history_targets == ("https://a.example/1", "https://a.example/2")


def test_history_is_planned_for_the_first_orders_only() -> None:
    documents = [order(f"c{n}", "d.example", f"https://t.example/{n}") for n in range(10)]

    plan = plan_warming(documents, history_orders=3)

    assert len(plan.customers) == 10
    assert plan.history_customers == ("c0", "c1", "c2")
    assert plan.history_targets == tuple(f"https://t.example/{n}" for n in range(3))


def test_blank_fields_are_left_out() -> None:
    plan = plan_warming([{"customer_id": "", "publisher_domain": None}, {}])

    assert plan == WarmPlan((), (), (), ())


def test_the_plan_survives_its_trip_through_the_task_message() -> None:
    plan = plan_warming([order("c1", "d.example", "https://t.example/")])

    assert WarmPlan.from_json(plan.to_json()) == plan


# --- the customer cache ---------------------------------------------------------------------


class Ledger:
    """Stands in for ``customers_by_id``: the stored customers, and how often they were read."""

    def __init__(self) -> None:
        self.customers: dict[str, CustomerProfile] = {}
        self.reads = 0
        #: run once, after the next read and before its caller caches the answer
        self.after_read: list[Any] = []

    def customers_by_id(self, session: object, ids: list[str]) -> dict[str, CustomerProfile]:
        self.reads += 1
        found = {i: self.customers[i] for i in ids if i in self.customers}
        while self.after_read:
            self.after_read.pop(0)()
        return found


def profile(customer_id: str, *, suspended: bool = False) -> CustomerProfile:
    return CustomerProfile(customer_id=customer_id, name=customer_id, suspended=suspended)


@pytest.fixture()
def client(monkeypatch: pytest.MonkeyPatch) -> redis.Redis:
    fake = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    monkeypatch.setattr(customer_cache, "redis_client", lambda: fake)
    return fake


@pytest.fixture()
def ledger(monkeypatch: pytest.MonkeyPatch) -> Ledger:
    stand_in = Ledger()

    @contextmanager
    def transaction() -> Iterator[None]:
        yield None

    monkeypatch.setattr(customer_cache, "transaction", transaction)
    monkeypatch.setattr(customer_cache, "customers_by_id", stand_in.customers_by_id)
    return stand_in


def test_a_cached_customer_is_read_once_from_the_ledger(
    client: redis.Redis, ledger: Ledger
) -> None:
    ledger.customers["c1"] = profile("c1")

    first = customer_cache.customer_profiles(["c1"])
    second = customer_cache.customer_profiles(["c1", "c1"])

    assert first == second == {"c1": profile("c1")}
    assert ledger.reads == 1


def test_an_unknown_customer_is_not_cached_so_a_later_import_is_seen_at_once(
    client: redis.Redis, ledger: Ledger
) -> None:
    assert customer_cache.customer_profiles(["new"]) == {}
    ledger.customers["new"] = profile("new")

    assert customer_cache.customer_profiles(["new"]) == {"new": profile("new")}


def test_an_import_invalidates_every_cached_customer(client: redis.Redis, ledger: Ledger) -> None:
    ledger.customers["c1"] = profile("c1")
    customer_cache.customer_profiles(["c1"])

    ledger.customers["c1"] = profile("c1", suspended=True)
    customer_cache.forget_customers()

    assert customer_cache.customer_profiles(["c1"])["c1"].suspended


def test_a_warm_that_read_before_an_import_cannot_cache_the_old_profile(
    client: redis.Redis, ledger: Ledger
) -> None:
    # Given a warm that reads the old profile, then an import that commits and
    # invalidates before the warm writes what it read into the cache
    ledger.customers["c1"] = profile("c1")

    def import_commits() -> None:
        ledger.customers["c1"] = profile("c1", suspended=True)
        customer_cache.forget_customers()

    ledger.after_read.append(import_commits)
    warmed = customer_cache.customer_profiles(["c1"])

    # When preflight reads next, Then it sees the suspension, not the warm's entry
    assert not warmed["c1"].suspended
    assert client.exists(customer_cache_key("c1"))  # written, but of an older generation
    assert customer_cache.customer_profiles(["c1"])["c1"].suspended


def test_without_redis_the_ledger_answers(monkeypatch: pytest.MonkeyPatch, ledger: Ledger) -> None:
    broken = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    broken.connected = False  # type: ignore[attr-defined]  # fakeredis: every command fails
    monkeypatch.setattr(customer_cache, "redis_client", lambda: broken)
    ledger.customers["c1"] = profile("c1")

    assert customer_cache.customer_profiles(["c1"]) == {"c1": profile("c1")}
