"""Scenarios A and B: the naive Celery design, measured the same way as batchline.

Each run: start one worker (concurrency 2), pause it, publish every order from a
child process (timing submission and measuring Redis growth with nothing
consuming), resume it and time until the last order is counted done.
"""

from __future__ import annotations

import sys
import time
import uuid
from typing import Literal

from bench.measure import redis_used_memory, wait_for_count
from bench.naive import QUEUE, done_key, naive
from bench.results import RunResult
from bench.services import BenchEnv, flush_broker
from bench.submitter import run_submitter
from bench.workers import WorkerGroup, pause, resume
from metrics.keys import queue_key
from metrics.redis_client import redis_client

NaiveKind = Literal["chain", "single"]

_SCENARIO: dict[NaiveKind, str] = {"chain": "A", "single": "B"}
_SUBMITTER: dict[NaiveKind, str] = {"chain": "naive-chain", "single": "naive-single"}
_TASKS_PER_ORDER: dict[NaiveKind, int] = {"chain": 4, "single": 1}
_CONCURRENCY = 2

WORKER_COMMAND = [
    *(sys.executable, "-m", "celery", "-A", "bench.naive", "worker", "-Q", QUEUE),
    *("-c", str(_CONCURRENCY), "-P", "prefork", "--prefetch-multiplier", "1"),
    *("--without-gossip", "--without-mingle", "--loglevel", "WARNING", "-n", "naive@%h"),
]


def _check_config(bench: BenchEnv) -> None:
    # bench.naive reads REDIS_URL when imported; imported before bench_services it
    # would publish to the wrong server while the workers listen on the right one.
    if naive.conf.broker_url != bench.env["REDIS_URL"]:
        raise RuntimeError("bench.naive was imported before bench_services set REDIS_URL")


def run_naive(bench: BenchEnv, orders: int, kind: NaiveKind) -> RunResult:
    """Measure the naive design: a 4-task chain ("chain", A) or one task ("single", B) per order.

    Args:
        bench: the session.
        orders: how many orders to publish and process.
        kind: "chain" or "single".

    Returns:
        The run's figures; ``extra`` adds tasks/s, the queue length seen before
        resuming and the largest single worker process.
    """
    _check_config(bench)
    flush_broker()
    run = uuid.uuid4().hex[:12]
    client = redis_client()
    with WorkerGroup([WORKER_COMMAND], bench, name=f"naive-{kind}-{orders}") as group:
        group.wait_ready(naive, 1)
        pause(naive, [QUEUE])
        memory_before = redis_used_memory(client)
        submitted = run_submitter(_SUBMITTER[kind], orders, {"run": run}, bench)
        memory_after = redis_used_memory(client)
        queued = int(client.llen(queue_key(QUEUE)))
        started = time.perf_counter()
        resume(naive, [QUEUE])
        finished = wait_for_count(done_key(run), orders, timeout=60 + orders / 100)
    client.delete(done_key(run))
    seconds = finished - started
    return RunResult(
        scenario=_SCENARIO[kind],
        orders=orders,
        seconds=seconds,
        items_per_s=orders / seconds,
        submit_seconds=float(submitted["submit_seconds"]),
        submitter_rss_mb=float(submitted["rss_mb"]),
        worker_rss_mb=group.peak_rss_mb(),
        redis_bytes_per_order=(memory_after - memory_before) / orders,
        extra={
            "tasks_per_order": _TASKS_PER_ORDER[kind],
            "tasks_per_s": orders * _TASKS_PER_ORDER[kind] / seconds,
            "queued_before_resume": queued,
            "worker_rss_per_process_mb": group.peak_rss_per_process_mb(),
            "worker_concurrency": _CONCURRENCY,
        },
    )


def run_chain(bench: BenchEnv, orders: int) -> RunResult:
    """Scenario A: a chain of four tasks per order."""
    return run_naive(bench, orders, "chain")


def run_single(bench: BenchEnv, orders: int) -> RunResult:
    """Scenario B: one no-op task per order (the floor of raw Celery)."""
    return run_naive(bench, orders, "single")
