"""The ledger's aggregates behind metrics: one statement per question, read-only.

``metrics.collector`` (reports for people) and ``metrics.exporter`` (Prometheus at
scrape time) call these; neither formats SQL of its own. The scrape's statements use
existing indexes: open items through ``ix_items_batch_state`` of unfinished batches,
new stage outputs by primary-key range.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import text
from sqlalchemy.orm import Session

from pipeline.lanes import PRIORITIES
from pipeline.states import OPEN_ITEM_STATES, ItemState, open_sql, pooled_sql, terminal_sql

#: A failed stage run, as opposed to QC's rewrite (also ``ok = false``, marked ``rewrite``).
_FAILED = "NOT o.ok AND NOT (o.output ? 'rewrite')"
_REWRITE = "NOT o.ok AND (o.output ? 'rewrite')"

# --- the scrape ---------------------------------------------------------------------------


def _sql_array(values: Iterable[str]) -> str:
    # Lane and state names are our own constants, never user input: inlined, so the
    # planner sees them as it plans (a bound array would hide the groups' sizes).
    return "ARRAY[" + ", ".join(f"'{value}'" for value in values) + "]"


# Three parts, each from an index: the pool (ix_items_pool_state, index-only), open
# items queued or leased (ix_items_queued, ix_items_leased: a lane window's worth
# and what is in flight), and finished items of unfinished batches (ix_items_batch_state).
# The pool is counted one (lane, state) group at a time, each an index-only range of
# ix_items_pool_state, in one process. Asked as one GROUP BY over half the table,
# PostgreSQL prefers a parallel sequential scan of the heap (three processes), up to
# four times slower at 100,000 pooled orders (docs/BENCHMARKS.md). It still grows with
# the pool, so the exporter reads it in the background (metrics.item_snapshot).
_UNFINISHED_ITEMS = text(
    f"""
    SELECT l.lane, s.state, true AS pooled, c.n, c.oldest_seconds
    FROM unnest({_sql_array(PRIORITIES)}) AS l(lane)
    CROSS JOIN unnest({_sql_array(s.value for s in ItemState if s in OPEN_ITEM_STATES)}) AS s(state)
    CROSS JOIN LATERAL (
        SELECT count(*) AS n, extract(epoch FROM now() - min(updated_at)) AS oldest_seconds
        FROM items WHERE lane = l.lane AND state = s.state AND {pooled_sql()}
    ) c
    WHERE c.n > 0
    UNION ALL
    SELECT lane, state, false, count(*), NULL
    FROM items WHERE (queued_at IS NOT NULL OR lease_expires_at IS NOT NULL) AND {open_sql()}
    GROUP BY 1, 2
    UNION ALL
    SELECT b.priority, t.state, false, sum(t.n), NULL
    FROM batches b CROSS JOIN LATERAL (
        SELECT state, count(*) AS n FROM items
        WHERE batch_id = b.id AND {terminal_sql()} GROUP BY state
    ) t
    WHERE b.finalized_at IS NULL
    GROUP BY 1, 2
    """
)


def unfinished_item_counts(session: Session) -> Sequence[Any]:
    """Open items, and finished items of unfinished batches: ``(lane, state, pooled, n, oldest)``.

    ``oldest`` (seconds) is set for pooled rows: how long the group's longest-waiting
    item has waited in the pool (``updated_at`` is set when an item returns there).
    """
    return session.execute(_UNFINISHED_ITEMS).all()


_BATCHES = text(
    """
    SELECT status, count(*) AS n, coalesce(array_agg(id) FILTER (WHERE status = 'RUNNING'), '{}')
    FROM batches GROUP BY status
    """
)


def batch_status_counts(session: Session) -> tuple[dict[str, int], list[str]]:
    """Batches by status, and the ids of the running ones."""
    counts: dict[str, int] = {}
    running: list[str] = []
    for status, count, ids in session.execute(_BATCHES):
        counts[str(status)] = int(count)
        running.extend(ids)
    return counts, running


_HALT = text("SELECT reason FROM controls WHERE name = 'halt'")


def halt_reason(session: Session) -> str | None:
    """The reason of the current halt, or ``None``."""
    reason = session.scalar(_HALT)
    return None if reason is None else str(reason)


_LAST_OUTPUT = text("SELECT coalesce(max(id), 0) FROM stage_outputs")


def last_output_id(session: Session) -> int:
    """The newest stage output's id (0: none yet)."""
    return int(session.scalar(_LAST_OUTPUT) or 0)


_DURATION_BUCKETS = text(
    """
    SELECT o.stage, width_bucket(o.duration_ms / 1000.0, CAST(:bounds AS float8[])) AS bucket,
           count(*) AS n, sum(o.duration_ms) / 1000.0 AS seconds
    FROM stage_outputs o
    WHERE o.id > :after AND o.id <= :upto
    GROUP BY 1, 2
    """
)


def duration_buckets(
    session: Session, bounds: Sequence[float], after: int, upto: int
) -> Sequence[Any]:
    """Stage runs with ids in ``(after, upto]`` by stage and duration bucket.

    Rows ``(stage, bucket, n, seconds)``: ``bucket`` is PostgreSQL's
    ``width_bucket`` against ``bounds`` (0: below the first bound, ``len(bounds)``:
    at or above the last).
    """
    params = {"bounds": [float(b) for b in bounds], "after": after, "upto": upto}
    return session.execute(_DURATION_BUCKETS, params).all()


_NEW_FAILURES = text(
    f"""
    SELECT coalesce(o.output ->> 'category', '') AS category,
           coalesce(i.error_class, '') AS error_class, count(*) AS n
    FROM stage_outputs o JOIN items i ON i.id = o.item_id
    WHERE o.id > :after AND o.id <= :upto AND {_FAILED}
    GROUP BY 1, 2
    """
)


def failures_between(session: Session, after: int, upto: int) -> Sequence[Any]:
    """Failed stage runs with ids in ``(after, upto]``: ``(category, error_class, n)``."""
    return session.execute(_NEW_FAILURES, {"after": after, "upto": upto}).all()


# --- reports for people -------------------------------------------------------------------

#: Which stage outputs a report covers: one batch's, or those finished in a window.
BATCH_SCOPE: Final = "i.batch_id = :batch_id"
WINDOW_SCOPE: Final = "o.finished_at >= :start AND o.finished_at < :end"
#: Stage outputs written since ``:since`` (the error summary's window).
SINCE_SCOPE: Final = "o.created_at >= :since"


def _stage_stats_sql(scope: str) -> Any:
    return text(
        f"""
        SELECT o.stage, count(*) AS runs,
               count(*) FILTER (WHERE o.ok) AS ok,
               count(*) FILTER (WHERE {_FAILED}) AS failed,
               count(*) FILTER (WHERE {_REWRITE}) AS rewrites,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY o.duration_ms) AS p50_ms,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY o.duration_ms) AS p95_ms,
               max(o.duration_ms) AS max_ms, sum(o.duration_ms) AS total_ms,
               min(o.started_at) AS first_start, max(o.finished_at) AS last_finish
        FROM stage_outputs o JOIN items i ON i.id = o.item_id
        WHERE {scope}
        GROUP BY o.stage
        """
    )


def _waits_sql(scope: str) -> Any:
    # The wait before a stage run: since the item's previous run finished (or since
    # it was submitted), i.e. time in the pool and the queue, waiting for a slot or a
    # token included. ``lag`` runs over every run of the items in scope, so the
    # previous run is found even when it lies outside a time window.
    return text(
        f"""
        WITH runs AS (
            SELECT o.id, o.item_id, o.stage, o.finished_at,
                   extract(epoch FROM o.started_at - coalesce(
                       lag(o.finished_at) OVER (PARTITION BY o.item_id
                                                ORDER BY o.started_at, o.id),
                       i.created_at)) AS wait_s
            FROM stage_outputs o JOIN items i ON i.id = o.item_id
            WHERE o.started_at IS NOT NULL AND o.item_id IN (
                SELECT o.item_id FROM stage_outputs o JOIN items i ON i.id = o.item_id
                WHERE {scope})
        )
        SELECT o.stage, count(*) AS runs,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY o.wait_s) AS p50_s,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY o.wait_s) AS p95_s,
               max(o.wait_s) AS max_s, sum(o.wait_s) AS total_s
        FROM runs o JOIN items i ON i.id = o.item_id
        WHERE {scope}
        GROUP BY o.stage
        """
    )


def stage_stats(session: Session, scope: str, params: dict[str, Any]) -> Sequence[Any]:
    """Per stage: runs, ok, failed, rewrites, p50/p95/max/total ms, first start, last finish."""
    return session.execute(_stage_stats_sql(scope), params).all()


def stage_waits(session: Session, scope: str, params: dict[str, Any]) -> Sequence[Any]:
    """Per stage: runs with a known start, p50/p95/max/total seconds waited before the run."""
    return session.execute(_waits_sql(scope), params).all()


_WINDOW_BATCHES = text(
    """
    SELECT b.status, count(DISTINCT b.id) AS batches, count(i.id) AS orders,
           count(i.id) FILTER (WHERE i.state = 'DELIVERED') AS delivered,
           count(i.id) FILTER (WHERE i.state = 'FAILED') AS failed,
           count(i.id) FILTER (WHERE i.state = 'CANCELLED') AS cancelled
    FROM batches b LEFT JOIN items i ON i.batch_id = b.id
    WHERE b.created_at >= :start AND b.created_at < :end
    GROUP BY b.status
    """
)


def window_batches(session: Session, start: datetime, end: datetime) -> Sequence[Any]:
    """Batches submitted in ``[start, end)`` by status, with their orders' outcomes."""
    return session.execute(_WINDOW_BATCHES, {"start": start, "end": end}).all()


_BATCH = text(
    """
    SELECT b.id, b.status, b.priority, b.total_items, b.created_at, b.finalized_at,
           coalesce((SELECT jsonb_object_agg(s.state, s.n) FROM (
               SELECT state, count(*) AS n FROM items WHERE batch_id = b.id GROUP BY state
           ) s), '{}') AS states
    FROM batches b WHERE b.id = :batch_id
    """
)


def batch_overview(session: Session, batch_id: str) -> Any:
    """The batch's row with its items counted by state (``states``), or ``None``."""
    return session.execute(_BATCH, {"batch_id": batch_id}).first()


#: How many slices of the batch's run the throughput series has.
TIME_BINS: Final = 30

_THROUGHPUT = text(
    f"""
    WITH runs AS (
        SELECT o.stage, o.finished_at FROM stage_outputs o JOIN items i ON i.id = o.item_id
        WHERE i.batch_id = :batch_id AND o.ok AND o.finished_at IS NOT NULL
    ), span AS (
        SELECT b.created_at AS lo,
               greatest(1.0, ceil(extract(epoch FROM max(r.finished_at) - b.created_at)
                                  / {TIME_BINS})) AS bin_s
        FROM batches b, runs r WHERE b.id = :batch_id GROUP BY b.created_at
    )
    SELECT r.stage, floor(extract(epoch FROM r.finished_at - s.lo) / s.bin_s) AS bin,
           s.bin_s, count(*) AS n
    FROM runs r, span s
    GROUP BY 1, 2, 3 ORDER BY 2, 1
    """
)


def throughput_bins(session: Session, batch_id: str) -> Sequence[Any]:
    """Successful stage runs per time slice since submission: ``(stage, bin, bin_s, n)``.

    The batch's run (submission to last finished run) is cut into about
    :data:`TIME_BINS` slices of ``bin_s`` seconds each.
    """
    return session.execute(_THROUGHPUT, {"batch_id": batch_id}).all()


_SLOWEST = text(
    """
    SELECT i.order_id, i.state,
           extract(epoch FROM max(o.finished_at) - i.created_at) AS elapsed_s,
           sum(o.duration_ms) / 1000.0 AS working_s, count(*) AS runs
    FROM items i JOIN stage_outputs o ON o.item_id = i.id
    WHERE i.batch_id = :batch_id AND o.finished_at IS NOT NULL
    GROUP BY i.id ORDER BY elapsed_s DESC, i.order_id LIMIT :limit
    """
)


def slowest_orders(session: Session, batch_id: str, limit: int) -> Sequence[Any]:
    """The orders that took longest from submission to their last stage run."""
    return session.execute(_SLOWEST, {"batch_id": batch_id, "limit": limit}).all()


def _failure_groups_sql(scope: str) -> Any:
    return text(
        f"""
        SELECT o.stage, coalesce(o.output ->> 'category', '') AS category,
               coalesce(o.output ->> 'code', '') AS code,
               coalesce(i.error_class, '') AS error_class, i.publisher_domain,
               count(*) AS n,
               sum(greatest(coalesce((o.output ->> 'attempts')::int, 1) - 1, 0)) AS retries,
               min(i.order_id) AS example_order, min(o.output ->> 'error') AS example_reason
        FROM stage_outputs o JOIN items i ON i.id = o.item_id
        WHERE {scope} AND {_FAILED}
        GROUP BY 1, 2, 3, 4, 5
        """
    )


def failure_groups(session: Session, scope: str, params: dict[str, Any]) -> Sequence[Any]:
    """Failed stage runs grouped by stage, category, code, class and publisher.

    Rows ``(stage, category, code, error_class, publisher_domain, n, retries,
    example_order, example_reason)``; ``retries`` are the tries before the last.
    """
    return session.execute(_failure_groups_sql(scope), params).all()


_EVENTS = text("SELECT kind, count(*) FROM events WHERE batch_id = :batch_id GROUP BY kind")


def event_counts(session: Session, batch_id: str) -> dict[str, int]:
    """The batch's logged events counted by kind (circuit deferrals, status changes...)."""
    return {str(k): int(n) for k, n in session.execute(_EVENTS, {"batch_id": batch_id})}
