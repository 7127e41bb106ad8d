"""Fairness: one customer with 10,000 orders beside nine with 100 each.

Issue 15's regime: writing takes ``LATENCY_MS`` (10 s) per article (the offline
writer waits like an LLM API answers), and the workers are exactly what
``batchline worker`` starts with no options (``python -m cli worker``: a prefork
process for the CPU-bound stages and two I/O threads workers for writing and
delivery), so concurrency, not CPU, sets the pace.

The nine small customers are copies (standard tier, 100 orders each), so their
alone-times measure one quantity: ``ALONE_SAMPLES`` of them (fair-1..3) are timed
alone, one after another, and every customer's shared time is divided by the
mean of those (the slowest and fastest are reported too). Timing all nine alone
would add about 12 minutes at 10 s per article for nine samples of one number.
Then all nine run beside the big customer's batch, which is cancelled once they
are done. The caps (global 50, per customer 10, per publisher 5) are audited
afterwards from the ledger's spans of every batch involved.

The rate limits are lifted (``BATCH_RATE_LIMITS``) as in scenario E: the default
preflight limit (100/min) would otherwise set the pace of 900 small orders (9
minutes) and this would measure the token bucket, not how the caps share slots.
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import datetime, timedelta
from statistics import mean
from typing import Any

from sqlalchemy import text

from bench.batchline import wait_final, with_env
from bench.realistic import WORKER_COMMAND
from bench.results import RunResult
from bench.services import BenchEnv, flush_broker
from bench.timings import batch_seconds
from bench.workers import WorkerGroup
from celery_app import app
from cli.sample_orders import load_catalog, sample_orders
from ledger.catalog import upsert_catalog
from ledger.db import transaction
from ledger.reports import output_spans
from pipeline.audit import max_overlap, max_overlap_by
from pipeline.catalog import Catalog, CustomerProfile, CustomerTier
from pipeline.settings import get_settings
from tasks.control import cancel_batch
from tasks.submit import submit_batch

BIG_ORDERS = 10_000
SMALL_ORDERS = 100
SMALL_CUSTOMERS = 9
LATENCY_MS = 10_000
#: Seconds at each end of the shared window reported apart (one writer call each).
EDGE_S = 20
BIG_SLOTS_LABEL = f"big customer's mean writing slots, first {EDGE_S} s / middle / last {EDGE_S} s"
#: Small customers timed alone (copies of one another; see the module docstring).
ALONE_SAMPLES = 3
#: Celery nodes ``WORKER_COMMAND`` (scenario E's ``batchline worker`` with every option at
#: its default) starts: the prefork worker and the I/O threads worker.
WORKER_NODES = 2
ENV = {
    "LOG_LEVEL": "WARNING",
    "WRITER_OFFLINE_LATENCY_MS": str(LATENCY_MS),
    # No preflight limit and a writer bucket the caps never reach (as scenario E).
    "BATCH_RATE_LIMITS": "writer=6000/min:100",
}


def _bases() -> list[CustomerProfile]:
    return [c for c in load_catalog().customers if not c.suspended]


def _aliases() -> dict[str, CustomerProfile]:
    """fair-big and fair-1..9, each a standard-tier copy of a sample customer."""
    bases = _bases()
    names = ["fair-big", *(f"fair-{n}" for n in range(1, SMALL_CUSTOMERS + 1))]
    return {name: bases[i % len(bases)] for i, name in enumerate(names)}


def _register(aliases: dict[str, CustomerProfile]) -> None:
    customers = tuple(
        CustomerProfile(
            customer_id=alias, name=f"{base.name} ({alias})", tier=CustomerTier.STANDARD
        )
        for alias, base in aliases.items()
    )
    with transaction() as session:
        upsert_catalog(session, Catalog(customers=customers))


def _orders(alias: str, base: CustomerProfile, count: int, tag: str) -> list[dict[str, Any]]:
    pool = sample_orders(count * 12, seed=hash(tag) % 10_000, tag=tag)
    mine = [o for o in pool if o["customer_id"] == base.customer_id][:count]
    if len(mine) < count:
        raise RuntimeError(f"only {len(mine)} sample orders for {base.customer_id}")
    return [{**o, "customer_id": alias, "deadline": None} for o in mine]


def _submit(alias: str, base: CustomerProfile, count: int, run: str) -> str:
    batch_id = f"fair-{run}-{alias}-{uuid.uuid4().hex[:6]}"
    submit_batch(
        _orders(alias, base, count, batch_id), "bench-fairness", "normal", {"batch_id": batch_id}
    )
    return batch_id


def _alone(aliases: dict[str, CustomerProfile]) -> dict[str, tuple[str, float]]:
    timed = {}
    for alias, base in list(aliases.items())[1 : 1 + ALONE_SAMPLES]:
        batch_id = _submit(alias, base, SMALL_ORDERS, "alone")
        wait_final(batch_id, timeout=600)
        timed[alias] = (batch_id, batch_seconds(batch_id))
    return timed


def _shared(aliases: dict[str, CustomerProfile]) -> tuple[str, dict[str, tuple[str, float]]]:
    (big_alias, big_base), *small = aliases.items()
    big = _submit(big_alias, big_base, BIG_ORDERS, "shared")
    time.sleep(5)  # the big customer is running when the small ones arrive
    batches = {alias: _submit(alias, base, SMALL_ORDERS, "shared") for alias, base in small}
    for batch_id in batches.values():
        wait_final(batch_id, timeout=900)
    cancel_batch(big)
    return big, {alias: (b, batch_seconds(b)) for alias, b in batches.items()}


def _caps(batch_ids: list[str]) -> dict[str, int]:
    settings = get_settings()
    capped, by_publisher = settings.capped_stages(), settings.publisher_capped_stages()
    with transaction() as session:
        every = output_spans(session, batch_ids, sorted(capped | by_publisher))
    # Each cap over the stages it bounds (by default writing, and delivery per publisher).
    spans = [s for s in every if s[0] in capped]
    publisher = [s for s in every if s[0] in by_publisher]
    return {
        "spans checked": len(every),
        "global max (cap 50)": max_overlap((s[3], s[4]) for s in spans),
        "per customer max (cap 10)": max(
            max_overlap_by((s[1], s[3], s[4]) for s in spans).values()
        ),
        "per publisher max (cap 5)": max(
            max_overlap_by((s[2], s[3], s[4]) for s in publisher).values(), default=0
        ),
    }


def _writing_shares(big: str, small: list[str]) -> dict[str, float]:
    """Who held the writing slots while the small customers ran (share of slot-seconds).

    The window is from the first small batch's submission to the last one's
    finalize; spans are clipped to it. With nine customers of 100 sharing 50 slots,
    every slot-second the big customer holds there delays them.
    """
    with transaction() as session:
        spans = output_spans(session, [big, *small], ["writing"])
        start, end = session.execute(
            text("SELECT min(created_at), max(finalized_at) FROM batches WHERE id = ANY(:b)"),
            {"b": small},
        ).one()
    held: dict[str, float] = {}
    for _, customer, _, began, ended in spans:
        overlap = (min(ended, end) - max(began, start)).total_seconds()
        held[customer] = held.get(customer, 0.0) + max(0.0, overlap)
    window = (end - start).total_seconds()
    big_spans = [(began, ended) for _, customer, _, began, ended in spans if customer == "fair-big"]
    return {
        "big customer's share of writing slot-seconds": round(
            held.get("fair-big", 0.0) / max(sum(held.values()), 1e-9), 3
        ),
        "mean writing slots held (cap 50)": round(sum(held.values()) / window, 1),
        # When it held them: its calls under way as the small ones arrive, the middle
        # (where every slot it holds delays them), or the end (slots they cannot fill).
        BIG_SLOTS_LABEL: " / ".join(
            f"{_mean_held(big_spans, a, b):.1f}" for a, b in _edges_and_middle(start, end)
        ),
    }


def _writing_calls(batches: dict[str, tuple[str, float]]) -> str:
    """Writing calls per batch, ``alias calls`` each: 100 unless QC sent articles back.

    A rewrite is one more 10 s call for a customer capped at 10 slots: a whole extra
    wave when the batch's 100 calls fill ten waves exactly (bench/NOTES.md, "The
    fairness reference's extra wave, explained").
    """
    with transaction() as session:
        calls = {
            alias: len(output_spans(session, [batch_id], ["writing"]))
            for alias, (batch_id, _) in batches.items()
        }
    return " / ".join(f"{alias} {n}" for alias, n in calls.items())


def _edges_and_middle(start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """The window's first and last ``EDGE_S`` seconds and what lies between."""
    edge = timedelta(seconds=EDGE_S)
    return [(start, start + edge), (start + edge, end - edge), (end - edge, end)]


def _mean_held(spans: list[tuple[datetime, datetime]], start: datetime, end: datetime) -> float:
    """Slots the spans held on average between ``start`` and ``end``."""
    seconds = (end - start).total_seconds()
    overlap = sum(max(0.0, (min(e, end) - max(b, start)).total_seconds()) for b, e in spans)
    return overlap / seconds if seconds > 0 else 0.0


def measure_fairness(bench: BenchEnv) -> RunResult:
    """Alone times, then shared times, and the cap audit; see the module docstring."""
    flush_broker()
    aliases = _aliases()
    _register(aliases)
    env = with_env(bench, ENV)
    started = time.perf_counter()
    with WorkerGroup([list(WORKER_COMMAND)], env, name="fairness") as group:
        group.wait_ready(app, WORKER_NODES, timeout=180)
        # The machine is shared: the 1-minute load average after each phase says how
        # busy it was (the ratio compares phases that ran under different loads).
        alone = _alone(aliases)
        load_alone = os.getloadavg()[0]
        big, shared = _shared(aliases)
        load_shared = os.getloadavg()[0]
        time.sleep(LATENCY_MS / 1000 + 3)  # let the big customer's running chunks end
    reference = mean(seconds for _, seconds in alone.values())
    customers = [
        {
            "customer": alias,
            "orders": SMALL_ORDERS,
            "alone_s": round(alone[alias][1], 2) if alias in alone else None,
            "shared_s": round(shared[alias][1], 2),
            "ratio": round(shared[alias][1] / reference, 2),
        }
        for alias in shared
    ]
    batch_ids = [big, *(b for b, _ in alone.values()), *(b for b, _ in shared.values())]
    return RunResult(
        scenario="fairness",
        orders=BIG_ORDERS + SMALL_CUSTOMERS * SMALL_ORDERS,
        seconds=time.perf_counter() - started,
        items_per_s=0.0,
        submit_seconds=0.0,
        submitter_rss_mb=0.0,
        worker_rss_mb=group.peak_rss_mb(),
        redis_bytes_per_order=0.0,
        extra={
            "customers": customers,
            "caps": _caps(batch_ids),
            **_writing_shares(big, [b for b, _ in shared.values()]),
            "alone mean s (reference)": round(reference, 2),
            "writing calls alone (100 without rewrites)": _writing_calls(alone),
            "writing calls shared": _writing_calls(shared),
            "alone min s / max s": f"{min(s for _, s in alone.values()):.1f} / "
            f"{max(s for _, s in alone.values()):.1f}",
            "load average after alone / shared": f"{load_alone:.1f} / {load_shared:.1f}",
            "worst ratio": max(float(str(c["ratio"])) for c in customers),
            "worst ratio vs fastest alone": round(
                max(s for _, s in shared.values()) / min(s for _, s in alone.values()), 2
            ),
            "settings": {**ENV, "workers": "python -m cli worker (defaults)"},
        },
    )
