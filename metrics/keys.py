"""Every Redis key batchline writes is built here, and only here.

Prefixes come from ``REDIS_PREFIX_BATCH`` and ``REDIS_PREFIX_METRICS``: they keep
batchline's keys apart from other applications' in one Redis database. They do not
separate two batchline installations (Celery's queues and keys carry no prefix): give
each its own database number (docs/deployment.md). To inspect a batch by hand:
``redis-cli HGETALL batch:progress:<batch_id>``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from pipeline.settings import get_settings


def progress_key(batch_id: str) -> str:
    """Hash of a batch's progress counters: ``batch:progress:<batch_id>``."""
    return f"{get_settings().redis_prefix_batch}progress:{batch_id}"


def error_bucket_key(hour: datetime) -> str:
    """Hash of error counts by class for one UTC hour: ``metrics:errors:<YYYYMMDDHH>``."""
    return f"{get_settings().redis_prefix_metrics}errors:{hour:%Y%m%d%H}"


def batch_error_bucket_key(batch_id: str) -> str:
    """Hash of one batch's failed orders by error class: ``metrics:batch-errors:<batch_id>``."""
    return f"{get_settings().redis_prefix_metrics}batch-errors:{batch_id}"


def batch_waits_key(batch_id: str) -> str:
    """Hash of a batch's retries, deferrals, limit waits: ``metrics:batch-waits:<batch_id>``."""
    return f"{get_settings().redis_prefix_metrics}batch-waits:{batch_id}"


def queue_key(queue: str) -> str:
    """The list kombu's Redis transport keeps a queue in: its bare name (``LLEN batch.high``)."""
    return queue


#: kombu's Redis transport keeps a queue's prioritised messages in sibling lists
#: ``<queue>\x06\x16<step>`` (its default steps); step 0 is the bare name.
_PRIORITY_STEPS: Final = (0, 3, 6, 9)
_PRIORITY_SEP: Final = "\x06\x16"


def lane_queue_keys(lane: str) -> list[str]:
    """Every list holding a lane's messages: ``batch.<lane>`` and ``batch.<lane>.io``.

    A lane has two queues (CPU-bound stages', I/O-bound stages'; ``celery_app.lane_queues``),
    each with kombu's priority siblings: a lane's backlog is the sum of them all.
    """
    # The queue names are celery_app's (imported here: celery_app's own imports reach
    # this module, and the names must not be spelt a second time).
    from celery_app import lane_queues

    queues = lane_queues(lane)
    return [
        queue_key(q) if step == 0 else f"{queue_key(q)}{_PRIORITY_SEP}{step}"
        for q in queues
        for step in _PRIORITY_STEPS
    ]


def sweeper_lock_key() -> str:
    """Lock that keeps two sweeps from running at once: ``batch:sweeper:lock``."""
    return f"{get_settings().redis_prefix_batch}sweeper:lock"


def publisher_cache_key(domain: str) -> str:
    """Cached publisher profile (JSON): ``batch:cache:publisher:<domain>``."""
    return f"{get_settings().redis_prefix_batch}cache:publisher:{domain}"


def slot_key(scope: str, name: str = "") -> str:
    """A concurrency semaphore (sorted set of holders scored by lease expiry).

    ``batch:slots:global``, ``batch:slots:customer:<id>``, ``batch:slots:publisher:<domain>``.
    """
    suffix = f"{scope}:{name}" if name else scope
    return f"{get_settings().redis_prefix_batch}slots:{suffix}"


def slot_key_pattern() -> str:
    """SCAN pattern matching every semaphore key (for the sweeper's reconciliation)."""
    return f"{get_settings().redis_prefix_batch}slots:*"


def slot_waiters_key(lane: str) -> str:
    """Items of ``lane`` waiting for a slot (sorted set scored by give-up time).

    ``batch:slot-waiters:<lane>``; outside ``slot_key_pattern``, so the sweeper's
    reconciliation of the semaphores never reads it as one.
    """
    return f"{get_settings().redis_prefix_batch}slot-waiters:{lane}"


def slot_wake_key(holder: str) -> str:
    """Where a release tells a waiting item it was handed a slot (a list it blocks on).

    ``batch:slot-wake:<item_id>:<stage>``; the semaphores' release script builds it
    from ``slot_wake_key("")`` (the prefix) and the holder's name.
    """
    return f"{get_settings().redis_prefix_batch}slot-wake:{holder}"


def rate_bucket_key(service: str, key: str = "") -> str:
    """Token bucket of an external service, optionally per key: ``batch:rate:<service>[:<key>]``."""
    suffix = f"{service}:{key}" if key else service
    return f"{get_settings().redis_prefix_batch}rate:{suffix}"


def rate_quota_key(service: str, key: str = "") -> str:
    """A service's daily quota (hash: UTC ``day``, ``used``): ``batch:quota:<service>[:<key>]``."""
    suffix = f"{service}:{key}" if key else service
    return f"{get_settings().redis_prefix_batch}quota:{suffix}"


def call_slot_key(service: str, key: str = "") -> str:
    """A service's calls in flight (``conc=N``, leased): ``batch:calls:<service>[:<key>]``.

    Not under ``slots:``: the sweeper reconciles those against items in the ledger,
    and a call's holder is a process, not an item; these free themselves by lease.
    """
    suffix = f"{service}:{key}" if key else service
    return f"{get_settings().redis_prefix_batch}calls:{suffix}"


def customer_cache_key(customer_id: str) -> str:
    """Cached customer profile (JSON with its catalog generation): ``batch:cache:customer:<id>``."""
    return f"{get_settings().redis_prefix_batch}cache:customer:{customer_id}"


def catalog_generation_key() -> str:
    """Counter bumped after every catalog import: ``batch:cache:catalog-generation``."""
    return f"{get_settings().redis_prefix_batch}cache:catalog-generation"


def breaker_key(circuit: str) -> str:
    """A circuit breaker's state (hash): ``batch:breaker:<circuit>``."""
    return f"{get_settings().redis_prefix_batch}breaker:{circuit}"


def feeder_lock_key(lane: str) -> str:
    """Short lock so one process at a time tops up a lane: ``batch:feeder:<lane>``."""
    return f"{get_settings().redis_prefix_batch}feeder:{lane}"


def feeder_again_key(lane: str) -> str:
    """Asks a lane's running feeder for one more round: ``batch:feeder:<lane>:again``."""
    return f"{get_settings().redis_prefix_batch}feeder:{lane}:again"


def bench_key(name: str) -> str:
    """Counters of the benchmark harness (bench/): ``batch:bench:<name>``."""
    return f"{get_settings().redis_prefix_batch}bench:{name}"
