"""``warm_cache_before_batch``: load what a batch's first chunks read, before they run.

What is warmed, and why each part can be trusted:

* **Publisher profiles** and **customer profiles** go into Redis with a TTL
  (``cache_warming.publishers``, ``cache_warming.customers``); the preparers read
  through the same caches, and a catalog import invalidates both.
* **Recent-order history is not cached.** Preflight's duplicate and anchor-share
  checks must see every order placed before them, including one submitted a second
  after the warm, and must stop counting one that failed or was cancelled since.
  A cached history is stale in both directions, and a "cached part + newer part
  from the ledger" split needs a watermark that no concurrent, not-yet-committed
  submission can slip under, which neither ids nor timestamps give. The preparer's
  ledger read is already one indexed query per chunk, so the warm instead runs the
  same query for the first orders' customers and targets: the index and heap pages
  the first chunks need are then in PostgreSQL's shared buffers, and the answer
  each chunk gets is still read at that chunk's own time.

High-priority batches warm synchronously at submit; the others send
``batchline.maintenance.warm_cache`` to ``batch.maintenance`` and go on at once.
Either way a warm only saves reads: a chunk that runs first reads through itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from cache_warming.customers import customer_profiles
from cache_warming.publishers import publisher_profiles
from ledger.catalog import recent_orders
from ledger.db import transaction
from pipeline.settings import get_settings
from pipeline.warming import WarmPlan, plan_warming

#: The maintenance task that warms in the background (routed by its prefix).
WARM_TASK: Final = "batchline.maintenance.warm_cache"


def warm_cache_before_batch(
    documents: Sequence[Mapping[str, Any]], wait: bool = True
) -> dict[str, int]:
    """Warm the caches a batch's preflight reads, now or in the background.

    Args:
        documents: the batch's orders (``OrderDocument`` JSON), in manifest order.
        wait: True warms here and returns what was loaded; False sends the warm to
            ``batch.maintenance`` and returns at once.

    Returns:
        Counts: ``domains``, ``cached`` and ``unknown`` publishers, ``customers`` and
        ``customers_cached``, ``history_rows`` prefetched; with ``wait=False`` the
        plan's sizes and ``queued`` = 1.
    """
    plan = plan_warming(documents)
    if not wait:
        from celery_app import app

        app.send_task(WARM_TASK, kwargs={"plan": plan.to_json()})
        return {"domains": len(plan.domains), "customers": len(plan.customers), "queued": 1}
    return warm(plan)


def warm(plan: WarmPlan) -> dict[str, int]:
    """Load the plan's profiles into the caches and its history pages into the ledger's buffers."""
    publishers = publisher_profiles(plan.domains)
    customers = customer_profiles(plan.customers)
    return {
        "domains": len(plan.domains),
        "cached": len(publishers),
        "unknown": len(plan.domains) - len(publishers),
        "customers": len(plan.customers),
        "customers_cached": len(customers),
        "history_rows": prefetch_history(plan),
    }


def prefetch_history(plan: WarmPlan) -> int:
    """Run preflight's history query for the plan's first orders; return the rows it read.

    The rows are dropped: only the pages they came from are kept warm (see the module).
    """
    if not plan.history_customers or not plan.history_targets:
        return 0
    settings = get_settings()
    days = max(settings.batch_anchor_window_days, settings.batch_duplicate_window_days)
    with transaction() as session:
        rows = recent_orders(
            session,
            plan.history_customers,
            since=datetime.now(UTC) - timedelta(days=days),
            target_urls=plan.history_targets,
        )
    return len(rows)
