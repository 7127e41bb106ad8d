"""Cache warming: the first preflight chunk's latency with and without a warm.

Run standalone (not part of ``make bench``)::

    .venv/bin/python -m bench.warming --trials 10 --out var/bench/warming.json

Against embedded (or configured) servers, a ledger holding a history of earlier
orders for the sample customers, and per trial a fresh batch of 50 orders
submitted without starting it. Trials alternate cold (the profile caches emptied)
and warm (``warm_cache_before_batch(wait=True)`` first, as a high batch does).
Each trial times, in a fresh interpreter as a newly started worker process is,
what a worker does for the batch's first preflight chunk: ``prepare_preflight``
(customers, publishers, history) and ``handle_preflight`` for its 10 orders.
PostgreSQL's buffers stay warm between trials (they cannot be emptied from here),
so the figures show what the Redis caches save, not a cold disk.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from unittest import mock

from sqlalchemy import select

HISTORY_ORDERS = 2000
BATCH_ORDERS = 50
CHUNK = 10


def _submit_unstarted(orders: list[dict[str, Any]], batch_id: str) -> None:
    """Write the batch to the ledger without dispatching it (nothing may run it)."""
    from tasks.submit import submit_batch

    with (
        mock.patch("tasks.stages.start_batch.apply_async"),
        mock.patch("tasks.feeder.feed"),
    ):
        submit_batch(orders, "bench", "normal", {"batch_id": batch_id, "warm_cache": False})


def _empty_caches() -> None:
    from metrics.keys import customer_cache_key, publisher_cache_key
    from metrics.redis_client import redis_client

    client = redis_client()
    for pattern in (customer_cache_key("*"), publisher_cache_key("*")):
        for key in client.scan_iter(match=pattern):
            client.delete(key)


def _first_chunk_ms(batch_id: str, results: Any) -> None:
    """In a fresh interpreter: time the preparer and the handler of the batch's first chunk."""
    from ledger.db import transaction
    from ledger.items import ClaimedItem
    from ledger.models import Item, StoredDocument
    from pipeline.manifest import OrderDocument
    from tasks.handlers import StageContext, handle_preflight
    from tasks.preparers import prepare_preflight

    with transaction() as session:
        rows = session.execute(
            select(Item.id, StoredDocument.document)
            .join(StoredDocument, StoredDocument.item_id == Item.id)
            .where(Item.batch_id == batch_id)
            .order_by(Item.id)
            .limit(CHUNK)
        ).all()
        items = [ClaimedItem(item_id, dict(document), 0) for item_id, document in rows]
    from ledger.db import dispose_engine

    dispose_engine()  # start the timed part with no open connection, as a new worker does
    started = time.perf_counter()
    prepared = prepare_preflight(batch_id, items)
    for item in items:
        order = OrderDocument.model_validate(item.document)
        handle_preflight(order, None, StageContext(batch_id, 1, prepared[item.item_id]))
    results.put((time.perf_counter() - started) * 1000)


def _trial(warm: bool, seed: int) -> dict[str, float]:
    from cache_warming import warm_cache_before_batch
    from cli.sample_orders import sample_orders
    from tasks.control import cancel_batch

    batch_id = f"warming-{uuid.uuid4().hex[:8]}"
    orders = sample_orders(BATCH_ORDERS, seed=seed, tag=batch_id)
    _submit_unstarted(orders, batch_id)
    _empty_caches()
    warm_ms = 0.0
    if warm:
        started = time.perf_counter()
        warm_cache_before_batch(orders, wait=True)
        warm_ms = (time.perf_counter() - started) * 1000
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    child = context.Process(target=_first_chunk_ms, args=(batch_id, results))
    child.start()
    chunk_ms = float(results.get(timeout=120))
    child.join(timeout=30)
    cancel_batch(batch_id)
    return {"chunk_ms": chunk_ms, "warm_ms": warm_ms}


def _summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median": round(statistics.median(ordered), 1),
        "p90": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 1),
        "min": round(ordered[0], 1),
    }


def run(trials: int) -> dict[str, Any]:
    """Seed the history, then alternate cold and warm trials; return the summary."""
    from bench.services import bench_services
    from cli.sample_orders import sample_orders

    with tempfile.TemporaryDirectory() as work, bench_services(Path(work)):
        _submit_unstarted(sample_orders(HISTORY_ORDERS, seed=1, tag="history"), "history")
        cold: list[float] = []
        warm: list[float] = []
        warm_cost: list[float] = []
        for trial in range(trials):
            for is_warm in (False, True):
                outcome = _trial(is_warm, seed=100 + trial)
                (warm if is_warm else cold).append(outcome["chunk_ms"])
                if is_warm:
                    warm_cost.append(outcome["warm_ms"])
    return {
        "trials": trials,
        "history_orders": HISTORY_ORDERS,
        "batch_orders": BATCH_ORDERS,
        "chunk_orders": CHUNK,
        "first_chunk_ms_cold": _summary(cold),
        "first_chunk_ms_warm": _summary(warm),
        "warm_call_ms": _summary(warm_cost),
    }


def main() -> None:
    """``python -m bench.warming``: print the summary as JSON (and write it with ``--out``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    summary = run(args.trials)
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
