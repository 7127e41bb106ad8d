"""The naive design as a separate Celery app: scenarios A and B.

Configured like batchline's app (JSON only, late acks, prefetch 1, reject on
worker loss, no results) so the comparison measures the design, not settings.
Run its worker with ``celery -A bench.naive worker -Q bench.naive``.
"""

from __future__ import annotations

import time
from typing import Any

from celery import Celery, chain
from kombu.entity import Queue

from metrics.keys import bench_key
from metrics.redis_client import redis_client
from pipeline.settings import Settings, get_settings

QUEUE = "bench.naive"


def done_key(run: str) -> str:
    """Counter of orders finished in run ``run``."""
    return bench_key(f"done:{run}")


def naive_config(settings: Settings) -> dict[str, Any]:
    """Celery settings of the naive app: batchline's, minus its lanes and routing."""
    return dict(
        broker_url=settings.redis_url or "redis://localhost:6379/0",
        # No result backend at all: a publisher subscribed to result channels it
        # never reads can stall (see ARCHITECTURE.md, "Measured facts").
        result_backend=None,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        task_queues=[Queue(QUEUE, routing_key=QUEUE)],  # type: ignore[no-untyped-call]
        task_default_queue=QUEUE,
        task_default_routing_key=QUEUE,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={"visibility_timeout": 1800},
        broker_connection_retry_on_startup=True,
        enable_utc=True,
    )


naive = Celery("bench_naive")
naive.conf.update(naive_config(get_settings()))


@naive.task(name="bench.naive.noop")  # type: ignore[untyped-decorator]  # Celery is untyped
def noop(order_id: int) -> None:
    """Do nothing: one stage of an order in the naive design."""


@naive.task(name="bench.naive.noop_done")  # type: ignore[untyped-decorator]
def noop_done(order_id: int, run: str) -> None:
    """Do nothing, then count the order as finished in run ``run``."""
    redis_client().incr(done_key(run))


def _publish(signatures: Any, orders: int) -> dict[str, Any]:
    """Publish ``signatures(i)`` for every order over one producer; time it."""
    started = time.perf_counter()
    with naive.producer_or_acquire() as producer:
        for order_id in range(orders):
            signatures(order_id).apply_async(producer=producer)
    return {"submit_seconds": time.perf_counter() - started}


def submit_chain(orders: int, options: dict[str, Any]) -> dict[str, Any]:
    """Scenario A: a chain of four tasks per order (three no-ops, then the counter).

    Args:
        orders: how many orders to publish.
        options: ``{"run": <unique run id>}``.

    Returns:
        ``{"submit_seconds": ...}``.
    """
    run = str(options["run"])
    return _publish(
        lambda i: chain(noop.si(i), noop.si(i), noop.si(i), noop_done.si(i, run)), orders
    )


def submit_single(orders: int, options: dict[str, Any]) -> dict[str, Any]:
    """Scenario B: one counting no-op task per order, the floor of raw Celery.

    Args:
        orders: how many orders to publish.
        options: ``{"run": <unique run id>}``.

    Returns:
        ``{"submit_seconds": ...}``.
    """
    run = str(options["run"])
    return _publish(lambda i: noop_done.si(i, run), orders)
