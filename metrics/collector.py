"""``BatchMetricsCollector``: the batch guide's metrics interface, over the ledger and Redis.

Three questions, each answered with a fixed number of statements whatever the size
of the batch or window (an integration test counts them):

- :meth:`BatchMetricsCollector.get_batch_metrics`: what happened between two times;
- :meth:`BatchMetricsCollector.get_performance_report`: how one batch ran;
- :meth:`BatchMetricsCollector.get_error_summary`: what failed lately, and why.

Durations come from ``stage_outputs`` (``duration_ms``: the handler's time;
``started_at``/``finished_at``: when the item held its slots); the wait before a stage
is the gap since the item's previous run ended (or since submission). Every figure is
plain JSON (numbers, strings, lists, dicts).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from ledger import metrics_queries as q
from metrics.batch_waits import fold_waits
from metrics.keys import batch_waits_key, error_bucket_key
from pipeline.stage_registry import STAGE_NAMES

#: How many slowest orders and top failure reasons a report lists.
TOP = 10


class UnknownBatch(LookupError):
    """The ledger holds no batch with this id."""


def _ms(value: Any) -> float:
    return round(float(value or 0.0), 2)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _in_stage_order(rows: Sequence[Any]) -> list[Any]:
    # Rows come in whatever order GROUP BY left them; people read stages in pipeline order.
    order = {name: index for index, name in enumerate(STAGE_NAMES)}
    return sorted(rows, key=lambda row: (order.get(row[0], len(order)), row[0]))


def _stage_figures(rows: Sequence[Any], seconds: float | None) -> dict[str, dict[str, Any]]:
    figures: dict[str, dict[str, Any]] = {}
    for stage, runs, ok, failed, rewrites, p50, p95, top, total, first, last in _in_stage_order(
        rows
    ):
        span = seconds if seconds is not None else _span_seconds(first, last)
        figures[stage] = {
            "runs": int(runs),
            "ok": int(ok),
            "failed": int(failed),
            "rewrites": int(rewrites),
            "p50_ms": _ms(p50),
            "p95_ms": _ms(p95),
            "max_ms": _ms(top),
            "total_ms": _ms(total),
            "throughput_per_s": round(int(ok) / span, 3) if span else 0.0,
        }
    return figures


def _span_seconds(first: datetime | None, last: datetime | None) -> float:
    if first is None or last is None:
        return 0.0
    return max((last - first).total_seconds(), 0.0)


def _wait_figures(rows: Sequence[Any]) -> dict[str, dict[str, Any]]:
    return {
        stage: {
            "runs": int(runs),
            "p50_s": round(float(p50 or 0), 3),
            "p95_s": round(float(p95 or 0), 3),
            "max_s": round(float(top or 0), 3),
            "total_s": round(float(total or 0), 3),
        }
        for stage, runs, p50, p95, top, total in _in_stage_order(rows)
    }


def _with_limit_waits(
    pool: dict[str, dict[str, Any]], limits: dict[str, dict[str, int]]
) -> dict[str, dict[str, Any]]:
    """Each stage's pool waits with its limit waits beside them (zeros where none)."""
    empty_pool = {"runs": 0, "p50_s": 0.0, "p95_s": 0.0, "max_s": 0.0, "total_s": 0.0}
    empty_limits = {"slot_waits": 0, "slot_wait_ms": 0, "rate_waits": 0, "rate_wait_ms": 0}
    stages = [s for s in STAGE_NAMES if s in pool or s in limits]
    stages += sorted((set(pool) | set(limits)) - set(stages))
    return {s: {**pool.get(s, empty_pool), **empty_limits, **limits.get(s, {})} for s in stages}


def _failure_summary(rows: Sequence[Any]) -> dict[str, Any]:
    by: dict[str, Counter[str]] = {
        name: Counter() for name in ("class", "category", "code", "stage", "publisher")
    }
    reasons: Counter[tuple[str, str, str]] = Counter()
    examples: dict[tuple[str, str, str], dict[str, str]] = {}
    retries = Counter[str]()
    for stage, category, code, error_class, publisher, n, tries, order, reason in rows:
        for name, value in zip(
            by, (error_class, category, code, stage, publisher or ""), strict=True
        ):
            by[name][value] += int(n)
        key = (stage, error_class, code)
        reasons[key] += int(n)
        retries[code or error_class] += int(tries or 0)
        example = examples.setdefault(key, {"order_id": order, "reason": reason or ""})
        if order < example["order_id"]:
            examples[key] = {"order_id": order, "reason": reason or ""}
    return {
        "total": sum(reasons.values()),
        **{f"by_{name}": dict(counts.most_common()) for name, counts in by.items()},
        "retries_by_cause": {k: v for k, v in retries.most_common() if v},
        "top_reasons": [
            {"stage": s, "error_class": c, "code": code, "count": n, **examples[(s, c, code)]}
            for (s, c, code), n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP]
        ],
    }


class BatchMetricsCollector:
    """Metrics over the ledger and Redis for reports, the monitor and the exporter.

    Args:
        engine: the ledger's engine (default: this process's, from ``DATABASE_URL``).
        client: a Redis client with decoded responses (default: this process's).
        clock: the current time (UTC), for the error summary's window.
    """

    def __init__(
        self,
        engine: Engine | None = None,
        client: redis.Redis | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._engine = engine
        self._client = client
        self._clock = clock

    @contextmanager
    def _session(self) -> Iterator[Session]:
        from ledger.db import engine

        with Session(self._engine or engine()) as session, session.begin():
            # One snapshot: every figure of a call describes the same moment.
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            yield session

    def _redis(self) -> redis.Redis:
        if self._client is None:
            from metrics.redis_client import redis_client

            self._client = redis_client()
        return self._client

    def get_batch_metrics(self, start_time: datetime, end_time: datetime) -> dict[str, Any]:
        """Batches submitted and stage runs finished in ``[start_time, end_time)``.

        Returns:
            ``summary`` (batches, orders, delivered, failed, cancelled, success rate,
            rewrites), ``batches_by_status``, ``stages`` (runs, ok, failed, rewrites,
            p50/p95/max ms, throughput per second over the window) and ``waits``
            (seconds each stage's runs waited in the pool before starting).

        Raises:
            ValueError: ``end_time`` is not after ``start_time``.
        """
        if end_time <= start_time:
            raise ValueError(f"end_time {end_time} must be after start_time {start_time}")
        params = {"start": start_time, "end": end_time}
        with self._session() as session:
            batches = q.window_batches(session, start_time, end_time)
            stages = q.stage_stats(session, q.WINDOW_SCOPE, params)
            waits = q.stage_waits(session, q.WINDOW_SCOPE, params)
        window = (end_time - start_time).total_seconds()
        stage_figures = _stage_figures(stages, window)
        summary = Counter[str]()
        for _status, count, orders, delivered, failed, cancelled in batches:
            summary.update(
                batches=count, orders=orders, delivered=delivered, failed=failed,
                cancelled=cancelled,
            )  # fmt: skip
        ended = summary["delivered"] + summary["failed"]
        return {
            "window": {"start": start_time.isoformat(), "end": end_time.isoformat()},
            "summary": {
                **{k: int(summary[k]) for k in ("batches", "orders", "delivered", "failed")},
                "cancelled": int(summary["cancelled"]),
                "success_rate": round(100 * summary["delivered"] / ended, 2) if ended else 0.0,
                "rewrites": sum(s["rewrites"] for s in stage_figures.values()),
            },
            "batches_by_status": {str(row[0]): int(row[1]) for row in batches},
            "stages": stage_figures,
            "waits": _wait_figures(waits),
        }

    def get_performance_report(self, batch_id: str) -> dict[str, Any]:
        """How one batch ran: per stage, over time, its slowest orders, its failures.

        Returns:
            ``batch`` (status, priority, counts by state, submitted/finalized, elapsed
            seconds), ``stages`` (runs, ok, failed, rewrites, p50/p95/max ms,
            throughput per second over the stage's own active span), ``waits`` (in
            the pool before each stage, and ``slot_waits``/``slot_wait_ms``,
            ``rate_waits``/``rate_wait_ms``: calls that slept for a ``conc=N`` slot or
            a rate-limit token), ``retries`` (by reason code, and per stage),
            ``deferrals`` (by cause: ``rate_limit``, ``circuit``, ``slots``),
            ``throughput`` (successful runs per time slice, per stage), ``slowest_orders``,
            ``failures`` (by class, category, code, stage, publisher; retries by cause;
            top reasons with an example order) and ``events`` (logged events by kind,
            circuit deferrals among them).

        Raises:
            UnknownBatch: no batch has this id.
        """
        params = {"batch_id": batch_id}
        with self._session() as session:
            batch = q.batch_overview(session, batch_id)
            if batch is None:
                raise UnknownBatch(f"no batch {batch_id!r} in the ledger")
            stages = q.stage_stats(session, q.BATCH_SCOPE, params)
            waits = q.stage_waits(session, q.BATCH_SCOPE, params)
            bins = q.throughput_bins(session, batch_id)
            slowest = q.slowest_orders(session, batch_id, TOP)
            failures = q.failure_groups(session, q.BATCH_SCOPE, params)
            events = q.event_counts(session, batch_id)
        # Redis's one round trip: what the ledger does not keep (metrics.batch_waits).
        held = fold_waits(self._redis().hgetall(batch_waits_key(batch_id)))  # type: ignore[arg-type]
        return {
            "batch": _batch_figures(batch, self._clock()),
            "stages": _stage_figures(stages, None),
            "waits": _with_limit_waits(_wait_figures(waits), held["limit_waits"]),
            "retries": held["retries"],
            "deferrals": held["deferrals"],
            "throughput": _throughput_series(bins),
            "slowest_orders": [
                {
                    "order_id": order,
                    "state": state,
                    "elapsed_s": round(float(elapsed or 0), 3),
                    "working_s": round(float(working or 0), 3),
                    "runs": int(runs),
                }
                for order, state, elapsed, working, runs in slowest
            ],
            "failures": _failure_summary(failures),
            "events": events,
        }

    def get_error_summary(self, hours: int = 24) -> dict[str, Any]:
        """Errors of the last ``hours`` hours, from Redis's hourly buckets and the ledger.

        Returns:
            ``hours``, ``buckets`` (``metrics:errors:<YYYYMMDDHH>`` per hour, by
            class: what workers counted, kept ``BATCH_METRICS_TTL_DAYS``),
            ``bucket_totals`` (by class over the window) and the ledger's failed
            stage runs in the window: ``total``, ``by_class``, ``by_category``,
            ``by_code``, ``by_stage``, ``by_publisher``, ``retries_by_cause`` and
            ``top_reasons`` with an example order and reason each.

        Raises:
            ValueError: ``hours`` is not between 1 and 24 * 365.
        """
        if not 1 <= hours <= 24 * 365:
            raise ValueError(f"hours must be between 1 and 8760, got {hours}")
        now = self._clock()
        hour_starts = [
            (now - timedelta(hours=back)).replace(minute=0, second=0, microsecond=0)
            for back in range(hours - 1, -1, -1)
        ]
        pipe = self._redis().pipeline(transaction=False)
        for start in hour_starts:
            pipe.hgetall(error_bucket_key(start))
        buckets = {
            f"{start:%Y%m%d%H}": {k: int(v) for k, v in raw.items()}
            for start, raw in zip(hour_starts, pipe.execute(), strict=True)
            if raw
        }
        totals = Counter[str]()
        for counts in buckets.values():
            totals.update(counts)
        with self._session() as session:
            rows = q.failure_groups(session, q.SINCE_SCOPE, {"since": hour_starts[0]})
        return {
            "hours": hours,
            "since": hour_starts[0].isoformat(),
            "buckets": buckets,
            "bucket_totals": dict(totals.most_common()),
            **_failure_summary(rows),
        }


def _batch_figures(batch: Any, now: datetime) -> dict[str, Any]:
    batch_id, status, priority, total, created, finalized, states = batch
    return {
        "batch_id": batch_id,
        "status": status,
        "priority": priority,
        "total": int(total),
        "states": {str(k): int(v) for k, v in sorted(states.items())},
        "submitted_at": _iso(created),
        "finalized_at": _iso(finalized),
        "elapsed_s": round(((finalized or now) - created).total_seconds(), 3),
    }


def _throughput_series(rows: Sequence[Any]) -> dict[str, Any]:
    bin_seconds = float(rows[0][2]) if rows else 0.0
    bins = int(max((row[1] for row in rows), default=-1)) + 1
    per_stage: dict[str, list[int]] = {}
    for stage, index, _bin_s, count in _in_stage_order(rows):
        per_stage.setdefault(stage, [0] * bins)[int(index)] = int(count)
    return {"bin_seconds": bin_seconds, "per_stage": per_stage}
