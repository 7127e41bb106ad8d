"""The ``batch:progress:<id>`` hash: live counters that can always be rebuilt from the ledger.

Fields: ``total``, ``completed`` (delivered), ``failed``, ``cancelled``,
``<stage>_done`` and ``<stage>_failed`` per stage, ``started_at``,
``updated_at`` and ``finished_at`` (UNIX seconds) and ``status``.
Counters are only bumped for items whose state change was committed, so a
duplicated chunk does not count twice.

A hash is *complete* when it holds ``total``: only :func:`init_progress` and
:func:`rebuild_progress` write that field. Anything else that finds the hash lost
(Redis restarted empty, TTL) must not start a new one holding only what happened
since: :func:`record_chunk` says so, and its caller rebuilds the hash from the
ledger, whose counts already include that chunk. A finalized batch's hash is
rebuilt from the ledger once and marked ``final``; live counters no longer apply.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import redis
from redis.client import Pipeline

from metrics.keys import batch_error_bucket_key, batch_waits_key, error_bucket_key, progress_key
from pipeline.settings import get_settings
from pipeline.stage_registry import STAGE_NAMES


@dataclass(frozen=True)
class ChunkProgress:
    """What one stage chunk changed, as counted after its transaction committed."""

    stage: str
    done: int
    failed: int
    delivered: int = 0
    #: failed items by error class, added to this hour's ``metrics:errors:<hour>`` bucket
    errors: Mapping[str, int] = field(default_factory=dict)
    #: items QC sent back to writing
    rewrites: int = 0
    #: retries, deferrals and limit waits (``metrics.batch_waits.chunk_fields``)
    waits: Mapping[str, int] = field(default_factory=dict)


def _ttl_seconds() -> int:
    return get_settings().batch_metrics_ttl_days * 86_400


def init_progress(client: redis.Redis, batch_id: str, total: int) -> None:
    """Create the hash for a new batch (does nothing if it already exists)."""
    key = progress_key(batch_id)
    now = time.time()
    pipe = client.pipeline()
    pipe.hsetnx(key, "total", total)
    pipe.hsetnx(key, "started_at", now)
    pipe.hsetnx(key, "updated_at", now)
    pipe.hsetnx(key, "status", "running")
    pipe.expire(key, _ttl_seconds())
    pipe.execute()


#: Present only in a hash that init or a rebuild from the ledger wrote.
COMPLETE_FIELD = "total"
#: Set when the counts were rebuilt from the ledger after the batch was finalized.
FINAL_FIELD = "final"


def is_complete(progress: Mapping[str, str]) -> bool:
    """Whether a progress hash holds every count (it was not lost, or was rebuilt since)."""
    return COMPLETE_FIELD in progress


def record_chunk(
    client: redis.Redis, batch_id: str, change: ChunkProgress, *fused: ChunkProgress
) -> bool:
    """Add one chunk's committed outcome to the counters, in one round trip.

    ``fused``: what a stage run inside the same chunk changed (``pipeline.fusing``),
    counted under its own stage in the same MULTI, so a lost hash is rebuilt once.

    Returns:
        True when counted. False when the hash was lost (or holds a finalized
        batch's ledger counts): the caller must rebuild it from the ledger, which
        already holds this chunk, since the counters alone are now wrong.
    """
    key = progress_key(batch_id)
    # MULTI: the checks see the hash exactly as the increments find it.
    pipe = client.pipeline(transaction=True)
    pipe.hexists(key, COMPLETE_FIELD)
    pipe.hexists(key, FINAL_FIELD)
    for each in (change, *fused):
        _count(pipe, key, batch_id, each)
    pipe.hset(key, "updated_at", time.time())
    pipe.expire(key, _ttl_seconds())
    complete, final, *_ = pipe.execute()
    return bool(complete) and not final


def _count(pipe: Pipeline, key: str, batch_id: str, change: ChunkProgress) -> None:
    pipe.hincrby(key, f"{change.stage}_done", change.done)
    pipe.hincrby(key, f"{change.stage}_failed", change.failed)
    pipe.hincrby(key, "failed", change.failed)
    pipe.hincrby(key, "completed", change.delivered)
    if change.rewrites:
        pipe.hincrby(key, "rewrites", change.rewrites)
    if change.errors:
        # The hour's bucket answers "what fails now?", the batch's "what failed in it?".
        for bucket in (error_bucket_key(datetime.now(UTC)), batch_error_bucket_key(batch_id)):
            for error_class, count in change.errors.items():
                pipe.hincrby(bucket, error_class, count)
            pipe.expire(bucket, _ttl_seconds())
    if change.waits:
        # Same round trip: a chunk that retried or waited costs no extra call.
        waits = batch_waits_key(batch_id)
        for name, count in change.waits.items():
            pipe.hincrby(waits, name, count)
        pipe.expire(waits, _ttl_seconds())


def mark_finished(client: redis.Redis, batch_id: str, status: str) -> None:
    """Record the batch's final status and end time."""
    key = progress_key(batch_id)
    client.hset(key, mapping={"status": status.lower(), "finished_at": time.time()})


def forget_progress(client: redis.Redis, batch_id: str) -> None:
    """Drop a deleted batch's hashes, so the same id submitted again starts from zero."""
    client.delete(progress_key(batch_id), batch_error_bucket_key(batch_id))


def read_progress(client: redis.Redis, batch_id: str) -> dict[str, str]:
    """Return the raw hash (empty if Redis lost it)."""
    raw: dict[str, str] = client.hgetall(progress_key(batch_id))  # type: ignore[assignment]
    return dict(raw)


def rebuild_progress(
    client: redis.Redis,
    batch_id: str,
    *,
    total: int,
    state_counts: Mapping[str, int],
    status: str,
    started_at: float,
    failed_by_stage: Mapping[str, int] | None = None,
    finished_at: float | None = None,
) -> dict[str, str]:
    """Rewrite the hash from ledger counts (after Redis restarted empty) and return it.

    Per-stage ``_done`` counters are derived from where items are now: an item
    past a stage has done it. With ``finished_at`` (the batch is finalized) the
    hash is marked ``final``: its counts are the ledger's for good.
    """
    past = _items_past_each_stage(state_counts)
    failed = state_counts.get("FAILED", 0)
    values: dict[str, str | float | int] = {
        "total": total,
        "completed": state_counts.get("DELIVERED", 0),
        "failed": failed,
        "cancelled": state_counts.get("CANCELLED", 0),
        "started_at": started_at,
        "updated_at": time.time(),
        "status": status.lower(),
        **{f"{stage}_done": past[stage] for stage in STAGE_NAMES},
        **{f"{stage}_failed": (failed_by_stage or {}).get(stage, 0) for stage in STAGE_NAMES},
    }
    if finished_at is not None:
        values["finished_at"] = finished_at
        values[FINAL_FIELD] = 1
    fields = {name: str(value) for name, value in values.items()}
    key = progress_key(batch_id)
    pipe = client.pipeline()
    pipe.delete(key)
    pipe.hset(key, mapping=fields)  # type: ignore[arg-type]  # redis-py's Mapping is invariant
    pipe.expire(key, _ttl_seconds())
    pipe.execute()
    return fields


_ORDER = ("PENDING", "PREFLIGHT", "WRITING", "QC", "APPROVED", "DELIVERED")


def _items_past_each_stage(state_counts: Mapping[str, int]) -> dict[str, int]:
    # preflight is done once an item reaches WRITING, writing once it reaches QC, ...
    past: dict[str, int] = {}
    for index, stage in enumerate(STAGE_NAMES):
        later = _ORDER[index + 2 :]
        past[stage] = sum(state_counts.get(state, 0) for state in later)
    return past
