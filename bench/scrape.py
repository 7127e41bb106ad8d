"""How long a Prometheus scrape takes against a large backlog (issue #13: ≤ 100 ms).

``python -m bench.scrape [--orders 100000]`` starts (or reuses) the servers as the
other benchmarks do (a fresh database, Redis database 11 flushed), builds the
backlog with bulk SQL (not through the pipeline: only the ledger's shape matters to
a scrape), then times the exporter's collector in-process (server side: the
ledger's and Redis's answers plus rendering the text format) and over HTTP.

The backlog: ``--orders`` open orders in 100 running batches across the three
lanes (PENDING, WRITING or QC), all waiting in the pool but one in 2,000 queued and
one in 2,000 leased (a lane window and the chunks in flight); the same number of
delivered orders in 100 finalized batches with four stage outputs each
(history a scrape must not pay for); slots held and rate buckets in Redis. The
first scrape reads that history into the stage histogram once and is reported on
its own; the figure that matters is the steady scrape, with the order counts read in
the background as ``batchline exporter`` does by default (metrics.item_snapshot); the
background reading and a scrape that counts by itself are timed too.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from bench.services import bench_services

#: Batches the open (and the finished) orders are spread over.
BATCHES = 100

_BATCHES_SQL = text(
    """
    INSERT INTO batches (id, project_uuid, priority, status, options, manifest_sha256,
                         total_items, created_at, finalized_at)
    SELECT CAST(:prefix AS text) || b, 'bench', (ARRAY['high','normal','low'])[1 + b % 3],
           CAST(:status AS text), '{}',
           repeat('0', 64), :per_batch, now() - interval '1 hour',
           CASE WHEN CAST(:status AS text) = 'RUNNING' THEN NULL ELSE now() END
    FROM generate_series(0, :batches - 1) AS b
    """
)

_ITEMS_SQL = text(
    """
    INSERT INTO items (batch_id, position, order_id, customer_id, publisher_domain,
                       state, lane, score, fair_rank, queued_at, lease_owner, lease_expires_at,
                       created_at, updated_at, attempts)
    SELECT CAST(:prefix AS text) || (n % :batches), n / :batches,
           CAST(:prefix AS text) || 'o' || n, 'c' || (n % 500), 'p' || (n % 800) || '.example',
           CASE WHEN CAST(:open AS boolean)
                THEN (ARRAY['PENDING','PENDING','PENDING','WRITING','QC'])[1 + n % 5]
                ELSE 'DELIVERED' END,
           (ARRAY['high','normal','low'])[1 + (n % :batches) % 3], n % 100, n / :batches,
           CASE WHEN CAST(:open AS boolean) AND n % 2000 = 1 THEN now() END,
           CASE WHEN CAST(:open AS boolean) AND n % 2000 = 2 THEN 'bench@worker' END,
           CASE WHEN CAST(:open AS boolean) AND n % 2000 = 2 THEN now() + interval '10 minutes' END,
           now() - interval '1 hour', now() - make_interval(secs => n % 3600), 0
    FROM generate_series(0, :orders - 1) AS n
    """
)

_OUTPUTS_SQL = text(
    """
    INSERT INTO stage_outputs (item_id, stage, attempt, ok, output, duration_ms,
                               started_at, finished_at, publisher_domain)
    SELECT i.id, s.stage, 1, true, '{}', 5 + (i.id % 500), now() - interval '50 minutes',
           now() - interval '49 minutes', i.publisher_domain
    FROM items i, unnest(ARRAY['preflight','writing','qc','delivery']) AS s(stage)
    WHERE i.state = 'DELIVERED'
    """
)


_COUNT_ALL = text("SELECT count(*) FROM items")


def build_backlog(orders: int) -> None:
    """Fill the ledger with ``orders`` open and ``orders`` delivered orders; hold slots."""
    from ledger.db import engine, transaction

    with transaction() as session:
        for prefix, status, is_open in (("open-", "RUNNING", True), ("done-", "COMPLETED", False)):
            session.execute(
                _BATCHES_SQL,
                {
                    "prefix": prefix,
                    "status": status,
                    "batches": BATCHES,
                    "per_batch": orders // BATCHES,
                },
            )
            session.execute(
                _ITEMS_SQL,
                {"prefix": prefix, "batches": BATCHES, "orders": orders, "open": is_open},
            )
        session.execute(_OUTPUTS_SQL)
    # What autovacuum does in a live ledger: statistics, and the visibility map that
    # lets the pool be counted from its index alone.
    with engine().connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE"))
    _hold_slots()


def _hold_slots() -> None:
    from metrics.keys import progress_key, slot_key
    from metrics.redis_client import redis_client

    client = redis_client()
    expiry = (time.time() + 600) * 1000
    pipe = client.pipeline(transaction=False)
    for holder in range(40):
        pipe.zadd(slot_key("global"), {f"{holder}:writing": expiry})
        pipe.zadd(slot_key("customer", f"c{holder % 50}"), {f"{holder}:writing": expiry})
        pipe.zadd(slot_key("publisher", f"p{holder % 80}.example"), {f"{holder}:writing": expiry})
    for batch in range(BATCHES):
        pipe.hset(progress_key(f"open-{batch}"), mapping={"total": 1, "updated_at": time.time()})
    pipe.execute()


def _timed(call: Any, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return times


def _summary(times: Sequence[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {
        "runs": len(ordered),
        "median_ms": round(statistics.median(ordered), 1),
        "p95_ms": round(ordered[max(0, int(len(ordered) * 0.95) - 1)], 1),
        "max_ms": round(ordered[-1], 1),
    }


def _registry(refresh_seconds: float) -> tuple[Any, Any]:
    from prometheus_client import CollectorRegistry

    from metrics.exporter import BatchlineCollector

    registry = CollectorRegistry(auto_describe=False)
    # Settled at once: the first scrape reads the whole history, as it is timed here.
    collector = BatchlineCollector(settle_seconds=0, refresh_seconds=refresh_seconds)
    registry.register(collector)
    return registry, collector


def measure(orders: int, runs: int) -> dict[str, Any]:
    """Build the backlog, then time the first scrape, steady scrapes, and scrapes over HTTP.

    Steady scrapes are timed as ``batchline exporter`` runs by default (order counts
    re-read in the background every ``REFRESH_SECONDS``, the thread running
    meanwhile) and with ``--refresh-seconds 0`` (each scrape counts); the background
    reading is timed on its own: what it costs the ledger each time.
    """
    from prometheus_client import generate_latest, start_http_server

    from ledger.db import engine
    from metrics.item_snapshot import REFRESH_SECONDS

    build_backlog(orders)
    registry, collector = _registry(REFRESH_SECONDS)
    first = _timed(lambda: generate_latest(registry), 1)[0]
    steady = _timed(lambda: generate_latest(registry), runs)
    per_scrape_registry, _ = _registry(0)
    generate_latest(per_scrape_registry)  # reads the history once, untimed
    # Alternated, so all three see the same load: a scrape that counts, a reading
    # alone, and the baseline: one plain count of every item, so the figures can be
    # read as ratios on a machine whose load varies.
    per_scrape, refresh, baseline = [], [], []
    with engine().connect() as connection:
        for _ in range(runs):
            per_scrape += _timed(lambda: generate_latest(per_scrape_registry), 1)
            refresh += _timed(collector.item_counts.refresh, 1)
            baseline += _timed(lambda: connection.execute(_COUNT_ALL).scalar_one(), 1)
    server, _thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    url = f"http://127.0.0.1:{server.server_port}/metrics"
    with httpx.Client() as http:
        over_http = _timed(lambda: http.get(url).raise_for_status(), runs)
    server.shutdown()
    collector.item_counts.stop()
    return {
        "scraped": _scraped_counts(generate_latest(registry).decode()),
        "open_orders": orders,
        "finished_orders": orders,
        "stage_outputs": orders * 4,
        "refresh_seconds": REFRESH_SECONDS,
        "first_scrape_ms": round(first, 1),
        "steady": _summary(steady),
        "steady_counting_each_scrape": _summary(per_scrape),
        "item_counts_refresh": _summary(refresh),
        "baseline_count_all_items": _summary(baseline),
        "steady_over_baseline": round(statistics.median(steady) / statistics.median(baseline), 2),
        "counting_each_scrape_over_baseline": round(
            statistics.median(per_scrape) / statistics.median(baseline), 2
        ),
        "refresh_over_baseline": round(statistics.median(refresh) / statistics.median(baseline), 2),
        "http": _summary(over_http),
    }


def _scraped_counts(body: str) -> dict[str, float]:
    """What the scrape saw of the backlog: orders in the pool, open orders, running batches."""
    from prometheus_client.parser import text_string_to_metric_families

    open_states = {"PENDING", "PREFLIGHT", "WRITING", "QC", "APPROVED"}
    seen = {"pool_items": 0.0, "open_items": 0.0, "running_batches": 0.0}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == "batchline_pool_items":
                seen["pool_items"] += sample.value
            elif sample.name == "batchline_items" and sample.labels["state"] in open_states:
                seen["open_items"] += sample.value
            elif sample.name == "batchline_batches" and sample.labels["status"] == "RUNNING":
                seen["running_batches"] += sample.value
    return seen


def main(argv: Sequence[str] | None = None) -> int:
    """Run the scrape benchmark and write its figures as JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.scrape", description=__doc__)
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path("var/bench/scrape.json"))
    parser.add_argument("--work-dir", type=Path, default=Path("var/bench/scrape-work"))
    args = parser.parse_args(argv)
    with bench_services(args.work_dir):
        result = measure(args.orders, args.runs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
