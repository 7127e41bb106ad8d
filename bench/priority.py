"""Priority: 20 high orders on an idle system, then behind a 20,000-order low backlog.

Two deployments. "default" is the workers exactly as ``batchline worker`` starts
them with no options (``python -m cli worker``: a prefork worker with
``BATCH_WORKER_CONCURRENCY`` processes for the CPU-bound stages and housekeeping,
and ``BATCH_IO_WORKER_PROCESSES`` threads-pool workers with ``BATCH_IO_WORKER_THREADS``
threads each for the lanes' I/O queues): shared workers only. "dedicated" adds a
``batchline worker --lanes high --concurrency 1 --io-threads 0`` (one prefork process
serving only the high lane), the guide's answer for a hard latency bound.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any

from bench.batchline import wait_final
from bench.results import RunResult
from bench.services import BenchEnv, flush_broker
from bench.timings import order_waits
from bench.workers import WorkerGroup
from celery_app import app
from cli.sample_orders import sample_orders
from tasks.control import cancel_batch
from tasks.submit import submit_batch

HIGH_ORDERS = 20
#: batches of 20 high orders per measurement, pooled: 60 orders (3 rounds) still gave
#: an idle p95 of 390-715 ms from one run to the next (bench/NOTES.md, "Short runs
#: repeated"), and the end-to-end target divides by it
ROUNDS = 10
BACKLOG = 20_000
#: how long the backlog runs before the high orders arrive (workers busy, lanes full)
WARM_SECONDS = 5.0

_BATCHLINE_WORKER = (sys.executable, "-m", "cli", "worker")
#: Each deployment: its ``batchline worker`` command lines and how many Celery workers
#: they start between them (each default command supervises a prefork and an I/O worker).
DEPLOYMENTS: dict[str, tuple[list[list[str]], int]] = {
    "default": ([list(_BATCHLINE_WORKER)], 2),
    "dedicated": (
        [
            list(_BATCHLINE_WORKER),
            [*_BATCHLINE_WORKER, "--lanes", "high", "--concurrency", "1", "--io-threads", "0"],
        ],
        3,
    ),
}


def _submit(count: int, priority: str, tag: str) -> str:
    batch_id = f"prio-{tag}-{uuid.uuid4().hex[:6]}"
    orders = sample_orders(count, seed=hash(batch_id) % 10_000, tag=batch_id)
    submit_batch(orders, "bench-priority", priority, {"batch_id": batch_id})
    return batch_id


def _high_orders(tag: str) -> dict[str, Any]:
    batch_ids = []
    for round_ in range(ROUNDS):
        batch_ids.append(_submit(HIGH_ORDERS, "high", f"{tag}{round_}"))
        wait_final(batch_ids[-1], timeout=120)
        time.sleep(1)
    return order_waits(batch_ids)


def measure_deployment(
    bench: BenchEnv, name: str, env: dict[str, str] | None = None
) -> dict[str, dict[str, Any]]:
    """Idle and loaded waits of one deployment of :data:`DEPLOYMENTS` (``env``: extra settings)."""
    flush_broker()
    commands, workers = DEPLOYMENTS[name]
    group_env = {"LOG_LEVEL": "WARNING", **(env or {})}
    with WorkerGroup(commands, bench, name=f"priority-{name}", env=group_env) as g:
        g.wait_ready(app, workers, timeout=180)  # three workers start slowly on a busy host
        wait_final(_submit(HIGH_ORDERS, "high", f"{name}-warm-up"), timeout=120)
        idle = _high_orders(f"{name}-idle")
        backlog = _submit(BACKLOG, "low", f"{name}-backlog")
        time.sleep(WARM_SECONDS)
        loaded = _high_orders(f"{name}-loaded")
        cancel_batch(backlog)
        time.sleep(2)  # let running low chunks end before the workers stop
    ratio = loaded["delivered_p95_ms"] / idle["delivered_p95_ms"]
    return {
        f"{name}, idle": idle,
        f"{name}, low backlog": {**loaded, "delivered_p95_vs_idle": round(ratio, 2)},
    }


def measure_priority(bench: BenchEnv, names: Sequence[str] = tuple(DEPLOYMENTS)) -> RunResult:
    """Each deployment; ``extra`` has one row of waits per deployment and load."""
    extra: dict[str, Any] = {}
    started = time.perf_counter()
    for name in names:
        extra.update(measure_deployment(bench, name))
    return RunResult(
        scenario="priority",
        orders=HIGH_ORDERS,
        seconds=time.perf_counter() - started,
        items_per_s=0.0,
        submit_seconds=0.0,
        submitter_rss_mb=0.0,
        worker_rss_mb=0.0,
        redis_bytes_per_order=0.0,
        extra=extra,
    )
