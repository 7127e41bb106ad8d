"""One frame of ``batchline monitor``: the ledger's and Redis's state as a JSON-ready dict.

A frame costs a fixed number of round trips whatever the backlog: five ledger
statements (batch totals, one page of open batches with their counts, the
pool per lane, the halt, the latest failures) and a few Redis pipelines (queue
lengths, slot occupancy, rate buckets, the last hours' error buckets).
Batches are paged, high priority first, so 1,000 open batches cost one page.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Final

import redis

from celery_app import MAINTENANCE_QUEUE, RECOVERY_QUEUE
from ledger.db import transaction
from ledger.overview import (
    BatchLine,
    batch_totals,
    current_halt,
    lane_pool,
    list_batches,
    recent_failures,
)
from metrics.keys import (
    call_slot_key,
    error_bucket_key,
    lane_queue_keys,
    queue_key,
    rate_bucket_key,
    slot_key,
    slot_key_pattern,
)
from metrics.redis_client import redis_client
from pipeline.lanes import PRIORITIES
from pipeline.limits import RateSpec
from pipeline.settings import get_settings
from pipeline.states import FINAL_BATCH_STATUSES
from pipeline.status import Counters, summarize
from tasks.limits.semaphore import occupancy, slot_keys

#: Hours of ``metrics:errors:<hour>`` buckets a frame sums up.
ERROR_HOURS: Final = 24
#: Latest failed orders a frame lists.
RECENT_FAILURES: Final = 5
#: Busiest customer and publisher semaphores a frame lists.
BUSIEST_SLOTS: Final = 5


def take_snapshot(*, page: int = 1, page_size: int = 20) -> dict[str, Any]:
    """Everything the monitor shows, read once.

    Args:
        page: which page of open batches (1-based), sorted high priority first, then oldest.
        page_size: open batches per page.
    """
    now = datetime.now(UTC)
    with transaction() as session:
        totals = batch_totals(session)
        lines = list_batches(
            session,
            limit=page_size,
            offset=(page - 1) * page_size,
            open_only=True,
            by_priority=True,
        )
        pool = lane_pool(session)
        halt = current_halt(session)
        failures = recent_failures(session, RECENT_FAILURES)
    client = redis_client()
    open_batches = sum(
        n for status, (n, _) in totals.items() if status.upper() not in FINAL_BATCH_STATUSES
    )
    return {
        "at": now.isoformat(),
        "halted": halt is not None,
        "halt": halt.as_dict() if halt else None,
        "lanes": _lanes(client, pool),
        "queues": _queues(client),
        "batch_counts": {status: n for status, (n, _) in sorted(totals.items())},
        "open_batches": open_batches,
        "page": page,
        "pages": max(1, -(-open_batches // page_size)),
        "batches": [_batch(line, now) for line in lines],
        "slots": _slots(client),
        "rate_limits": _rates(client, get_settings().rate_limits()),
        "errors": _errors(client, now),
        "recent_failures": failures,
    }


def _lanes(client: redis.Redis, pool: dict[str, tuple[int, float]]) -> dict[str, dict[str, Any]]:
    pipe = client.pipeline(transaction=False)
    for lane in PRIORITIES:
        for key in lane_queue_keys(lane):
            pipe.llen(key)
    replies = pipe.execute()
    per_lane = len(replies) // len(PRIORITIES)
    # A lane's messages: both its queues (CPU- and I/O-bound stages'), every sibling list.
    lengths = [sum(replies[i : i + per_lane]) for i in range(0, len(replies), per_lane)]
    return {
        lane: {
            "messages": int(length),
            "pooled": pool.get(lane, (0, 0.0))[0],
            "oldest_wait_seconds": round(pool.get(lane, (0, 0.0))[1], 1),
        }
        for lane, length in zip(PRIORITIES, lengths, strict=True)
    }


def _queues(client: redis.Redis) -> dict[str, int]:
    """Messages waiting in the queues that are not lanes (maintenance, recovery)."""
    pipe = client.pipeline(transaction=False)
    for queue in (MAINTENANCE_QUEUE, RECOVERY_QUEUE):
        pipe.llen(queue_key(queue))
    lengths = pipe.execute()
    return {
        queue: int(n) for queue, n in zip((MAINTENANCE_QUEUE, RECOVERY_QUEUE), lengths, strict=True)
    }


def _batch(line: BatchLine, now: datetime) -> dict[str, Any]:
    """An open batch with its velocity and ETA, measured as ``batch_status`` does."""
    started = line.created_at.timestamp()
    counters = Counters(
        total=line.total,
        completed=line.delivered,
        failed=line.failed,
        cancelled=line.cancelled,
        started_at=started,
        updated_at=now.timestamp(),  # open batches: measured up to now, as batch_status does
    )
    summary = summarize(counters, finished=False)
    return {
        **line.as_dict(),
        "progress_percentage": summary["progress_percentage"],
        "velocity": summary["velocity"],
        "estimated_time_remaining": summary["estimated_time_remaining"],
        "eta_human": summary["eta_human"],
    }


def _slots(client: redis.Redis) -> dict[str, Any]:
    """Slots in use against their caps: global, and the busiest customers and publishers."""
    settings = get_settings()
    keys = slot_keys(client, slot_key_pattern())
    used = occupancy(client, [slot_key("global"), *keys])
    caps = {
        "customer": settings.batch_cap_per_customer,
        "publisher": settings.batch_cap_per_publisher,
    }
    prefix = slot_key("")
    busiest: list[dict[str, Any]] = []
    for key in keys:
        scope, _, name = key.removeprefix(prefix).partition(":")
        if scope in caps and used.get(key, 0):
            busiest.append(
                {"scope": scope, "name": name, "in_use": used[key], "limit": caps[scope]}
            )
    busiest.sort(key=lambda s: (-s["in_use"] / max(s["limit"], 1), s["scope"], s["name"]))
    return {
        "global": {"in_use": used.get(slot_key("global"), 0), "limit": settings.batch_cap_global},
        "busiest": busiest[:BUSIEST_SLOTS],
    }


def _rates(client: redis.Redis, specs: dict[str, RateSpec]) -> dict[str, dict[str, Any]]:
    """Tokens left in each service's shared bucket (per-key services: not listed per key)."""
    shared = {service: spec for service, spec in specs.items() if not spec.per_day}
    pipe = client.pipeline(transaction=False)
    pipe.time()
    for service in shared:
        pipe.hmget(rate_bucket_key(service), ["tokens", "ts"])
    (seconds, micros), *buckets = pipe.execute()
    now_ms = int(seconds) * 1000 + int(micros) / 1000
    bounded = [
        call_slot_key(s) for s, spec in shared.items() if spec.concurrency and not spec.per_key
    ]
    calls = occupancy(client, bounded)
    report: dict[str, dict[str, Any]] = {}
    for (service, spec), bucket in zip(shared.items(), buckets, strict=True):
        in_flight = calls.get(call_slot_key(service))
        report[service] = {
            "tokens": None if spec.per_key else round(_tokens_now(spec, bucket, now_ms), 2),
            "burst": spec.burst,
            "per_minute": spec.per_minute,
            "per_key": spec.per_key,
            "calls_in_flight": in_flight,
            "concurrency": spec.concurrency or None,
        }
    return report


def _tokens_now(spec: RateSpec, bucket: list[Any], now_ms: float) -> float:
    """The bucket's tokens refilled up to now (a missing bucket is full), as the Lua script does."""
    tokens, ts = bucket
    if tokens is None or ts is None:
        return float(spec.burst)
    refill = max(0.0, now_ms - float(ts)) * spec.per_minute / 60_000
    return min(float(spec.burst), float(tokens) + refill)


def _errors(client: redis.Redis, now: datetime) -> dict[str, Any]:
    """Failed orders by error class over the last ``ERROR_HOURS`` hourly buckets."""
    hours = [now - timedelta(hours=back) for back in range(ERROR_HOURS)]
    pipe = client.pipeline(transaction=False)
    for hour in hours:
        pipe.hgetall(error_bucket_key(hour))
    by_class: dict[str, int] = {}
    last_hour = 0
    for index, bucket in enumerate(pipe.execute()):
        for error_class, count in bucket.items():
            by_class[str(error_class)] = by_class.get(str(error_class), 0) + int(count)
            last_hour += int(count) if index == 0 else 0
    ordered = dict(sorted(by_class.items(), key=lambda item: (-item[1], item[0])))
    return {"hours": ERROR_HOURS, "by_class": ordered, "this_hour": last_hour}
