"""``batchline demo``: real servers, real workers, three sample batches, live progress."""

from __future__ import annotations

import os
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cli.demo_api import demo_api, hold
from cli.sample_orders import load_catalog, orders_built_to_fail, sample_orders
from cli.schedule_cmd import compressed_schedule, window_note
from cli.workers import ALL_LANES, WorkerSpec, default_workers, running_workers
from pipeline.settings import get_settings

#: Share of the demo's orders per priority.
SPLIT = (("high", 0.1), ("normal", 0.5), ("low", 0.4))
FINAL = {"completed", "partial", "failed", "cancelled"}


@dataclass(frozen=True)
class DemoBatch:
    """One submitted demo batch."""

    priority: str
    batch_id: str
    orders: int
    submitted_at: float


def split_counts(total: int) -> list[tuple[str, int]]:
    """Divide ``total`` orders over the priorities (high gets at least one)."""
    high = max(1, round(total * SPLIT[0][1]))
    normal = round(total * SPLIT[1][1])
    return [("high", high), ("normal", normal), ("low", max(0, total - high - normal))]


def submit_demo_batches(total: int, run_tag: str) -> list[DemoBatch]:
    """Submit the demo's batches, low first so the high one must overtake them."""
    from tasks import submit_batch

    orders = sample_orders(total, tag=run_tag)
    # The normal batch also carries orders built to fail, one per kind of refusal.
    extra = {"normal": orders_built_to_fail(run_tag)}
    batches: list[DemoBatch] = []
    start = 0
    plan = split_counts(total)
    for priority, count in reversed(plan):  # low first: high must overtake it
        chunk, start = orders[start : start + count], start + count
        chunk = chunk + extra.get(priority, [])
        if not chunk:
            continue
        batch_id = f"{run_tag}-{priority}"
        submitted_at = time.time()
        submit_batch(chunk, "demo-project", priority, {"batch_id": batch_id})
        batches.append(DemoBatch(priority, batch_id, len(chunk), submitted_at))
    return batches[::-1]  # shown high first


def watch(batches: list[DemoBatch], console: Console, timeout: float) -> dict[str, dict[str, Any]]:
    """Show a live bar per batch until all are final; return their last status."""
    from tasks import batch_status

    statuses: dict[str, dict[str, Any]] = {}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=console, transient=False) as bars:
        ids = {
            b.batch_id: bars.add_task(f"{b.priority:>6} {b.batch_id}", total=b.orders)
            for b in batches
        }
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for batch in batches:
                status = statuses[batch.batch_id] = batch_status(batch.batch_id)
                terminal = status["completed"] + status["failed"] + status["cancelled"]
                # With scheduled stages: how many wait for which window.
                label = f"{batch.priority:>6} {batch.batch_id} {window_note(status)}"
                bars.update(ids[batch.batch_id], completed=terminal, description=label)
            if all(s["status"] in FINAL for s in statuses.values()):
                break
            time.sleep(0.25)
    return statuses


def ledger_report(batch_ids: list[str]) -> dict[str, Any]:
    """Per-stage timings, failures (by class and one by one) and rewrites, from the ledger."""
    from ledger.db import transaction
    from ledger.reports import failed_orders, failures_by_class, rewrite_count, stage_timings

    with transaction() as session:
        return {
            "stage_timings": stage_timings(session, batch_ids),
            "failure_reasons": failures_by_class(session, batch_ids),
            "failures": failed_orders(session, batch_ids),
            "rewrites": rewrite_count(session, batch_ids),
        }


def seed_catalog() -> int:
    """Load the sample catalog (customers and publishers) the demo's orders use."""
    from cache_warming.customers import forget_customers
    from cache_warming.publishers import forget_publishers
    from ledger.catalog import upsert_catalog
    from ledger.db import transaction

    catalog = load_catalog()
    with transaction() as session:
        upsert_catalog(session, catalog)
    forget_publishers(p.domain for p in catalog.publishers)
    forget_customers()
    return len(catalog.customers) + len(catalog.publishers)


def summarize(batches: list[DemoBatch], statuses: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Build the demo's summary (also printed as JSON with ``--json``)."""
    rows = []
    for batch in batches:
        status = statuses[batch.batch_id]
        rows.append({**status, "orders": batch.orders, "wall_seconds": _wall(status, batch)})
    report = ledger_report([b.batch_id for b in batches])
    total = sum(batch.orders for batch in batches)
    walls = [row["wall_seconds"] for row in rows if row["wall_seconds"] is not None]
    elapsed = max(walls) if walls else None
    return {
        "orders": total,
        "delivered": sum(row["completed"] for row in rows),
        "failed": sum(row["failed"] for row in rows),
        "elapsed_seconds": elapsed,
        "orders_per_second": round(total / elapsed, 1) if elapsed else None,
        "batches": rows,
        **report,
        "articles_dir": str(get_settings().batch_output_dir.resolve()),
    }


def _wall(status: dict[str, Any], batch: DemoBatch) -> float | None:
    from datetime import datetime

    if not status.get("finalized_at"):
        return None
    ended = datetime.fromisoformat(status["finalized_at"]).timestamp()
    return round(ended - batch.submitted_at, 2)


def use_compressed_schedule(console: Console) -> None:
    """Schedule every stage every few seconds from now, for this process and its workers."""
    from celery_app import reconfigure

    os.environ.update(compressed_schedule(time.time()))
    get_settings.cache_clear()
    reconfigure()
    for stage in get_settings().schedules().scheduled:
        console.print(f"{stage.stage}: {stage.describe()}, window {stage.window} s")


@dataclass(frozen=True)
class ApiOptions:
    """``demo --api``: where the API listens, and whether it stays up after the run."""

    host: str = "127.0.0.1"
    port: int = 8080
    hold: bool = False


def run_demo(
    total: int,
    console: Console,
    timeout: float = 240.0,
    *,
    scheduled: bool = False,
    api: ApiOptions | None = None,
) -> dict[str, Any]:
    """Start workers, submit the sample batches, watch them and return the summary.

    ``scheduled``: every stage waits for windows opening every few seconds.
    ``api``: serve the HTTP API and its batches page beside the run (cli.demo_api).
    """
    if scheduled:
        use_compressed_schedule(console)
    settings = get_settings()
    log_dir = Path("var/log")
    specs = [
        # As `batchline worker` runs by default: processes, and a threads worker for I/O.
        *default_workers(
            ALL_LANES,
            settings.batch_worker_concurrency,
            settings.batch_io_worker_threads,
            "lanes",
            settings.batch_io_worker_processes,
        ),
        WorkerSpec("high", ("high",), 1),
    ]
    run_tag = f"demo{int(time.time())}"
    seed_catalog()
    with ExitStack() as stack:
        stack.enter_context(running_workers(specs, env={}, log_dir=log_dir, with_beat=True))
        if api is not None:
            stack.enter_context(demo_api(console, api.host, api.port, log_dir))
        batches = submit_demo_batches(total, run_tag)
        submitted = sum(batch.orders for batch in batches)
        console.print(f"submitted {submitted} orders in {len(batches)} batches ({run_tag})")
        statuses = watch(batches, console, timeout)
        if api is not None and api.hold:
            hold(console)
    return summarize(batches, statuses)
