"""The work pool and the feeder against real PostgreSQL and Redis.

Scores in SQL agree with ``calculate_priority``; the pool hands out the best
score first and equal scores to the smaller customer first; a lane never holds
more than ``BATCH_LANE_WINDOW`` messages, whatever the size of the batch.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from kombu import pools
from sqlalchemy import text
from sqlalchemy.orm import Session

from celery_app import LANES
from ledger import pool
from ledger.batches import insert_batch
from ledger.catalog import customer_tiers
from ledger.db import transaction
from ledger.pool import candidates, refresh_scores
from metrics.keys import queue_key
from pipeline.manifest import OrderDocument, validate_submission
from pipeline.priority import calculate_priority
from tests.integration.helpers import make_orders
from tests.support import apply_environment, restore_environment

pytestmark = pytest.mark.integration

POOL_REDIS_DB = 6


def _insert(session: Session, orders: list[dict[str, Any]], priority: str = "low") -> str:
    batch_id = f"pool-{uuid.uuid4().hex[:8]}"
    submission = validate_submission(orders, "p", priority, {}, max_items=100_000)
    insert_batch(
        session, batch_id=batch_id, submission=submission, manifest_sha256="x", task_id="t"
    )
    return batch_id


def _running(session: Session, orders: list[dict[str, Any]], set_items: str | None = None) -> str:
    """A normal-lane batch of ``orders``, RUNNING; ``set_items``: an SQL ``SET`` for its items."""
    batch_id = _insert(session, orders, priority="normal")
    session.execute(text("UPDATE batches SET status = 'RUNNING' WHERE id = :b"), {"b": batch_id})
    if set_items:
        session.execute(text(f"UPDATE items SET {set_items} WHERE batch_id = :b"), {"b": batch_id})
    return batch_id


def test_sql_scores_agree_with_calculate_priority(rolled_back: Session) -> None:
    # Given orders of every tier (and none), every deadline class and various ages
    now = datetime.now(UTC)
    deadlines = [None, now + timedelta(hours=10), now + timedelta(hours=50),
                 now + timedelta(hours=200), now - timedelta(hours=5)]  # fmt: skip
    orders = make_orders(40, "scores")
    for n, order in enumerate(orders):
        order["deadline"] = deadlines[n % len(deadlines)]
        if n % 7 == 0:
            order["customer_id"] = "not-in-the-catalog"
    batch_id = _insert(rolled_back, orders)
    ages = [0.2, 1.7, 10.2, 80.3, 400.6]
    rolled_back.execute(
        text(
            "UPDATE items SET created_at = now() - make_interval(secs => :a * 3600)"
            " WHERE batch_id = :b AND position % 5 = :p"
        ),
        [{"a": age, "b": batch_id, "p": p} for p, age in enumerate(ages)],
    )

    # When the sweeper's refresh recomputes them in SQL
    refresh_scores(rolled_back)

    # Then every score is what the Python formula says at the database's now
    rows = rolled_back.execute(
        text(
            "SELECT d.document, i.created_at, i.score, now() FROM items i"
            " JOIN order_documents d ON d.item_id = i.id WHERE i.batch_id = :b"
        ),
        {"b": batch_id},
    ).all()
    tiers = customer_tiers(rolled_back, {row[0]["customer_id"] for row in rows})
    for document, created_at, score, db_now in rows:
        stored = OrderDocument.model_validate(document)
        expected = calculate_priority(
            stored, tier=tiers.get(stored.customer_id), waiting_since=created_at, now=db_now
        )
        assert score == expected, (document, created_at)


def test_pool_hands_out_best_score_first_then_the_smaller_customer_first(
    rolled_back: Session,
) -> None:
    # Given one batch: customer A with 6 orders, customer B with 2, and one urgent order
    base = make_orders(9, "fair")
    for n, order in enumerate(base):
        order["customer_id"] = "pool-a" if n < 6 else "pool-b"
        order["deadline"] = None
    base[8]["customer_id"], base[8]["deadline"] = "pool-c", datetime.now(UTC) + timedelta(hours=2)
    batch_id = _running(rolled_back, base)

    # When the feeder asks the pool of the lane for its best candidates
    picked = [c for c in candidates(rolled_back, "normal", 100) if c.batch_id == batch_id]

    # Then the urgent order comes first, then B's two (ranks 3, 4), then A's (7 to 12)
    assert [c.customer_id for c in picked] == [
        "pool-c", "pool-b", "pool-b", "pool-a", "pool-a", "pool-a", "pool-a", "pool-a", "pool-a",
    ]  # fmt: skip


def test_a_later_small_customer_overtakes_an_earlier_big_one_and_equals_alternate(
    rolled_back: Session,
) -> None:
    # Given a big customer's batch (12 orders), then two small customers' (3 each)
    big = make_orders(12, "big")
    for order in big:
        order["customer_id"], order["deadline"] = "pool-big", None
    batches = [_insert(rolled_back, big, priority="normal")]
    for name in ("pool-s1", "pool-s2"):
        small = make_orders(3, name)
        for order in small:
            order["customer_id"], order["deadline"] = name, None
        batches.append(_insert(rolled_back, small, priority="normal"))
    rolled_back.execute(
        text("UPDATE batches SET status = 'RUNNING' WHERE id = ANY(:b)"), {"b": batches}
    )

    # When the feeder asks the pool of the lane for its best candidates
    picked = [c for c in candidates(rolled_back, "normal", 1000) if c.batch_id in batches]

    # Then the two small customers alternate, and all of theirs go before the big one's
    assert [c.customer_id for c in picked] == ["pool-s1", "pool-s2"] * 3 + ["pool-big"] * 12


def test_a_short_limit_takes_the_best_across_running_batches_and_skips_paused_ones(
    rolled_back: Session,
) -> None:
    # Given three batches of one lane with interleaved scores above anyone else's:
    # two running, one paused (whose orders score highest)
    batches = []
    for name in ("pool-r1", "pool-r2", "pool-p"):
        orders = make_orders(8, name)
        for order in orders:
            order["customer_id"], order["deadline"] = name, None
        batches.append(_insert(rolled_back, orders, priority="normal"))
    rolled_back.execute(
        text("UPDATE items SET score = 10000000 + (id % 13) * 7 WHERE batch_id = ANY(:b)"),
        {"b": batches[:2]},
    )
    rolled_back.execute(
        text("UPDATE items SET score = 20000000 WHERE batch_id = :b"), {"b": batches[2]}
    )
    rolled_back.execute(
        text("UPDATE batches SET status = 'RUNNING' WHERE id = ANY(:b)"), {"b": batches[:2]}
    )
    rolled_back.execute(
        text("UPDATE batches SET status = 'PAUSED' WHERE id = :b"), {"b": batches[2]}
    )
    ranked = rolled_back.execute(
        text("SELECT id FROM items WHERE batch_id = ANY(:b) ORDER BY score DESC, fair_rank, id"),
        {"b": batches[:2]},
    ).scalars()
    expected = [int(item_id) for item_id in ranked]

    # When the feeder asks for fewer candidates than the running batches hold
    picked = candidates(rolled_back, "normal", 11)

    # Then it gets the lane's best 11, merged across both running batches, none paused
    assert [c.item_id for c in picked] == expected[:11]
    assert {c.batch_id for c in picked} == set(batches[:2])


def test_the_pool_query_walks_the_pool_index_for_a_batch_the_statistics_do_not_know(
    rolled_back: Session,
) -> None:
    # Given a running batch no ANALYZE has seen (uncommitted), so the planner
    # estimates almost none of its items pooled, as for any new batch on a long history
    batch_id = _running(rolled_back, make_orders(30, "plan"))

    # When the feeder's query is planned as candidates() runs it
    rolled_back.execute(pool._SORT_OFF)
    plan = "\n".join(
        str(row[0])
        for row in rolled_back.execute(
            text(f"EXPLAIN {pool._CANDIDATES.text}"),
            {"lane": "normal", "limit": 2000, "io_limit": 2000, "cpu_limit": 2000},
        )
    )
    rolled_back.execute(pool._SORT_DEFAULT)

    # Then each batch's items come from the ordered walks of the pool indexes, which
    # stop at the limit, never from all of its open items sorted
    assert "ix_items_pool_cpu" in plan, plan
    assert "ix_items_pool_io" in plan, plan
    assert "ix_items_open" not in plan, plan
    assert [c.batch_id for c in candidates(rolled_back, "normal", 2000)].count(batch_id) == 30


def test_any_pooled_sees_a_running_batchs_waiting_items_of_its_lane_only(
    rolled_back: Session,
) -> None:
    # Given a running normal-lane batch whose items wait, one kind after the other
    batch_id = _running(rolled_back, make_orders(3, "any"))
    assert pool.any_pooled(rolled_back, "normal")
    assert not pool.any_pooled(rolled_back, "high") and not pool.any_pooled(rolled_back, "low")
    rolled_back.execute(
        text("UPDATE items SET state = 'WRITING' WHERE batch_id = :b"), {"b": batch_id}
    )
    assert pool.any_pooled(rolled_back, "normal")  # the I/O-bound kind counts too

    # When their messages are out (queued), Then nothing waits
    rolled_back.execute(
        text("UPDATE items SET queued_at = now() WHERE batch_id = :b"), {"b": batch_id}
    )
    assert not pool.any_pooled(rolled_back, "normal")

    # And a paused batch's pooled items do not count (the feeder could not send them)
    rolled_back.execute(
        text("UPDATE items SET queued_at = NULL WHERE batch_id = :b"), {"b": batch_id}
    )
    rolled_back.execute(text("UPDATE batches SET status = 'PAUSED' WHERE id = :b"), {"b": batch_id})
    assert not pool.any_pooled(rolled_back, "normal")


def test_any_pooled_probes_the_pool_indexes(rolled_back: Session) -> None:
    # Given a running batch the statistics do not know
    _running(rolled_back, make_orders(30, "anyplan"))

    # When the look-up is planned, Then each probe is a look-up in a pool index
    plan = "\n".join(
        str(row[0])
        for row in rolled_back.execute(text(f"EXPLAIN {pool._ANY_POOLED.text}"), {"lane": "high"})
    )
    assert "ix_items_pool_cpu" in plan, plan
    assert "ix_items_pool_io" in plan, plan
    assert "Seq Scan on items" not in plan, plan


def _on_its_way(session: Session, lane: str, customer: str, rows: str) -> None:
    """A batch of ``lane`` whose orders (all ``customer``'s) are set by ``rows``' SQL CASE."""
    batch_id = _insert(session, make_orders(6, f"onway-{lane}"), priority=lane)
    session.execute(text("UPDATE batches SET status = 'RUNNING' WHERE id = :b"), {"b": batch_id})
    session.execute(
        text(f"UPDATE items SET customer_id = :c, {rows} WHERE batch_id = :b"),
        {"b": batch_id, "c": customer},
    )


def test_work_on_its_way_to_the_slots_counts_its_lane_and_the_higher_ones_only(
    rolled_back: Session,
) -> None:
    # Given writing work queued just now in every lane, and in the normal lane also an
    # item queued a minute ago, one waiting for preflight, one waiting for delivery
    # (WRITING), one still in the pool and one already claimed
    customer = f"onway-{uuid.uuid4().hex[:6]}"
    queued_now = "state = 'APPROVED', queued_at = now()"
    for lane in ("high", "low"):
        _on_its_way(rolled_back, lane, customer, queued_now)
    _on_its_way(
        rolled_back,
        "normal",
        customer,
        "state = CASE WHEN position = 3 THEN 'PENDING' WHEN position = 4 THEN 'WRITING'"
        " ELSE 'APPROVED' END,"
        " queued_at = CASE position WHEN 0 THEN now() - interval '1 minute'"
        " WHEN 1 THEN NULL ELSE now() END,"
        " lease_owner = CASE WHEN position = 5 THEN 'w' END",
    )
    rolled_back.execute(
        text("UPDATE items SET queued_at = NULL WHERE customer_id = :c AND lease_owner = 'w'"),
        {"c": customer},
    )

    # When the normal lane's feeder asks what is on its way within 10 s
    mine = [
        q for q in pool.queued_io(rolled_back, ["high", "normal"], 10) if q.customer_id == customer
    ]

    # Then the high lane's 6 and the normal lane's fresh writing and delivery work count
    counted: dict[str, int] = {}
    for queued in mine:  # one row per state, customer and publisher
        counted[queued.state] = counted.get(queued.state, 0) + queued.count
    assert counted == {"APPROVED": 6 + 1, "WRITING": 1}
    plan = "\n".join(
        str(row[0])
        for row in rolled_back.execute(
            text(f"EXPLAIN {pool._QUEUED_IO.text}"), {"lanes": ["normal"], "within": 10}
        )
    )
    assert "ix_items_queued_io" in plan, plan


def test_a_held_state_stays_in_the_pool_and_the_rest_keep_their_order(
    rolled_back: Session,
) -> None:
    # Given a running batch with orders waiting in PENDING, WRITING and QC
    batch_id = _running(
        rolled_back,
        make_orders(30, "held"),
        "state = CASE position % 3 WHEN 0 THEN 'PENDING'"
        " WHEN 1 THEN 'WRITING' ELSE 'QC' END, score = 100 + position % 7",
    )

    # When writing's window is shut (the feeder holds WRITING)
    everything = [c for c in candidates(rolled_back, "normal", 1000) if c.batch_id == batch_id]
    held = [
        c for c in candidates(rolled_back, "normal", 1000, ["WRITING"]) if c.batch_id == batch_id
    ]

    # Then the held orders stay out and the others come in the same order as without a hold
    assert len(everything) == 30
    assert held == [c for c in everything if c.state != "WRITING"]
    assert (
        candidates(
            rolled_back, "normal", 1000, ["PENDING", "PREFLIGHT", "WRITING", "QC", "APPROVED"]
        )
        == []
    )


def test_each_kind_gets_at_most_its_own_share_of_the_best_candidates(
    rolled_back: Session,
) -> None:
    # Given a running batch whose best orders wait for preflight (CPU-bound) and
    # whose few others, further down, wait for writing (I/O-bound)
    batch_id = _running(
        rolled_back,
        make_orders(40, "kinds"),
        "score = 50000000 - position,"
        " state = CASE WHEN position % 8 = 7 THEN 'WRITING' ELSE 'PENDING' END",
    )
    ranked = [c for c in candidates(rolled_back, "normal", 1000) if c.batch_id == batch_id]
    assert len(ranked) == 40

    # When the feeder has room for 6 CPU-bound orders and 10 I/O-bound ones, asking
    # for 40 (with and without a held state), then for only 8 in all
    kinds = {False: 6, True: 10}
    picked = candidates(rolled_back, "normal", 40, per_kind=kinds)
    held = candidates(rolled_back, "normal", 40, ["QC"], per_kind=kinds)
    short = candidates(rolled_back, "normal", 8, per_kind=kinds)
    short_held = candidates(rolled_back, "normal", 8, ["QC"], per_kind=kinds)

    # Then it gets the best 6 preflight orders and all 5 writing ones, in rank order,
    # and of those eleven the best 8
    cpu = [c.item_id for c in ranked if c.state == "PENDING"]
    io = [c.item_id for c in ranked if c.state == "WRITING"]
    best = [i for i in (c.item_id for c in ranked) if i in cpu[:6] + io]
    assert [c.item_id for c in picked] == best
    assert held == picked
    assert [c.item_id for c in short] == best[:8]
    assert short_held == short
    assert [c.state for c in candidates(rolled_back, "normal", 16)].count("PENDING") == 14


def test_a_deep_backlog_of_one_kind_is_read_only_up_to_that_kinds_room(
    rolled_back: Session,
) -> None:
    # Given a running batch whose 294 best orders wait for preflight (CPU-bound) and
    # whose 6 last ones wait for writing (I/O-bound), far below the feeder's limit
    batch_id = _running(
        rolled_back,
        make_orders(300, "deep"),
        "score = 50000000 - position,"
        " state = CASE WHEN position >= 294 THEN 'WRITING' ELSE 'PENDING' END",
    )
    params = {"lane": "normal", "limit": 16, "io_limit": 10, "cpu_limit": 6}

    # When the feeder has room for 6 CPU-bound orders and 10 I/O-bound ones
    picked = [
        c
        for c in candidates(rolled_back, "normal", 16, per_kind={False: 6, True: 10})
        if c.batch_id == batch_id
    ]
    rolled_back.execute(pool._SORT_OFF)
    plan = rolled_back.execute(
        text(f"EXPLAIN (ANALYZE, FORMAT JSON) {pool._CANDIDATES.text}"), params
    ).scalar_one()
    rolled_back.execute(pool._SORT_DEFAULT)

    # Then it gets the 6 best preflight orders and the 6 writing ones from the bottom,
    # and each batch's walk of the preflight backlog read no more than its 6 rows
    assert [c.state for c in picked] == ["PENDING"] * 6 + ["WRITING"] * 6
    scans = _index_scans(plan[0]["Plan"])
    assert scans["ix_items_pool_cpu"] and max(scans["ix_items_pool_cpu"]) <= 6, scans
    assert scans["ix_items_pool_io"] and max(scans["ix_items_pool_io"]) <= 10, scans


def _index_scans(node: dict[str, Any]) -> dict[str, list[float]]:
    """Rows each index scan of an ``EXPLAIN (ANALYZE, FORMAT JSON)`` plan returned per loop."""
    scans: dict[str, list[float]] = {}
    if "Index Name" in node:
        scans.setdefault(node["Index Name"], []).append(float(node["Actual Rows"]))
    for child in node.get("Plans", []):
        for name, rows in _index_scans(child).items():
            scans.setdefault(name, []).extend(rows)
    return scans


PREFLIGHT = "batchline.stage.preflight"
START = "batchline.start_batch"


def _tasks_queued(client: redis.Redis, queue: str) -> list[str]:
    """The task of each message in ``queue``, oldest first (kombu pushes left, pops right)."""
    held = client.lrange(queue_key(queue), 0, -1)
    return [json.loads(message)["headers"]["task"] for message in reversed(held)]


def test_a_lane_holds_at_most_its_window_of_messages(
    service_env: dict[str, str], tmp_path: Any, isolated_redis: Callable[[int], str]
) -> None:
    # Given a lane window of 4 messages and a Redis database no worker consumes
    saved = dict(os.environ)
    url = isolated_redis(POOL_REDIS_DB)
    apply_environment({"REDIS_URL": url, "BATCH_LANE_WINDOW": "4"})
    try:
        from tasks.control import cancel_batch
        from tasks.submit import submit_batch

        # When a 400-order batch is submitted
        batch_id = f"window-{uuid.uuid4().hex[:6]}"
        submit_batch(make_orders(400, batch_id), "p", "low", {"batch_id": batch_id})

        # Then the low lane holds exactly 4 chunks (40 orders), and behind them the
        # batch's handle (start_batch); the rest waits in the pool
        client = redis.Redis.from_url(url)
        assert _tasks_queued(client, LANES["low"]) == [PREFLIGHT] * 4 + [START]
        with transaction() as session:
            queued = session.execute(
                text(
                    "SELECT count(*) FILTER (WHERE queued_at IS NOT NULL), count(*)"
                    " FROM items WHERE batch_id = :b"
                ),
                {"b": batch_id},
            ).one()
        assert tuple(queued) == (40, 400)
        cancel_batch(batch_id)  # nothing else may feed it later
        client.close()
    finally:
        restore_environment(saved)


def test_a_refill_after_a_call_tops_the_lane_up_from_its_timer_thread(
    service_env: dict[str, str], isolated_redis: Callable[[int], str]
) -> None:
    # Given a lane window of 4, full, in a Redis database no worker consumes
    saved = dict(os.environ)
    url = isolated_redis(POOL_REDIS_DB)
    apply_environment({"REDIS_URL": url, "BATCH_LANE_WINDOW": "4"})
    # kombu caches one producer pool per broker URL per process; a test before this one
    # on the same URL closed its connections when it restored the environment.
    pools.reset()  # type: ignore[no-untyped-call]
    try:
        from tasks.control import cancel_batch
        from tasks.refill import refill_after_call
        from tasks.submit import submit_batch

        batch_id = f"refill-{uuid.uuid4().hex[:6]}"
        submit_batch(make_orders(400, batch_id), "p", "low", {"batch_id": batch_id})
        client = redis.Redis.from_url(url)
        low = queue_key(LANES["low"])
        assert _tasks_queued(client, LANES["low"]) == [PREFLIGHT] * 4 + [START]

        # When a worker takes two messages (the oldest: two chunks) and two calls end
        client.rpop(low, 2)
        refill_after_call()
        refill_after_call()

        # Then the scheduled refill (a timer thread, not the caller) fills the window
        # again: four messages, the handle among them
        deadline = time.monotonic() + 60  # generous: the machine is shared
        while client.llen(low) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _tasks_queued(client, LANES["low"]) == [PREFLIGHT] * 2 + [START, PREFLIGHT]
        cancel_batch(batch_id)
        client.close()
    finally:
        restore_environment(saved)


def test_article_signatures_are_each_publishers_newest(rolled_back: Session) -> None:
    # Given approved QC outputs of two publishers, one of them with a long history
    from ledger.items import article_signatures

    orders = make_orders(12, "signatures")
    for n, order in enumerate(orders):
        order["publisher_domain"] = "sig-a.example" if n < 9 else "sig-b.example"
    batch_id = _insert(rolled_back, orders)
    ids = [
        int(i)
        for (i,) in rolled_back.execute(
            text("SELECT id FROM items WHERE batch_id = :b ORDER BY position"), {"b": batch_id}
        )
    ]
    rolled_back.execute(
        text(
            "INSERT INTO stage_outputs"
            " (item_id, stage, attempt, ok, output, duration_ms, publisher_domain)"
            " SELECT :i, 'qc', 1, true, CAST(:o AS jsonb), 0, publisher_domain"
            " FROM items WHERE id = :i"
        ),
        [{"i": i, "o": f'{{"signature": [{n}]}}'} for n, i in enumerate(ids)],
    )

    # When QC asks for the newest 3 per publisher, leaving out its own chunk (the newest)
    found = article_signatures(
        rolled_back,
        ["sig-a.example", "sig-b.example"],
        exclude=[ids[8]],
        per_domain=3,
        num_perm=1,
    )

    # Then each publisher's newest three others come back, and nothing else
    assert sorted(found["sig-a.example"]) == [[5], [6], [7]]
    assert sorted(found["sig-b.example"]) == [[9], [10], [11]]
