"""Prometheus metrics read from the ledger and Redis at scrape time.

:class:`BatchlineCollector` is a ``prometheus_client`` custom collector: register it on
any registry (``batchline exporter`` serves one; the HTTP API can mount the same). A
scrape costs a fixed handful of statements and one Redis round trip per kind of key,
whatever the backlog (docs/BENCHMARKS.md has the figure at 100,000 orders):

- open items, and finished items of unfinished batches, by lane, state and "in the
  pool": the one count that grows with the backlog, so with ``refresh_seconds`` it is
  read in the background (:mod:`metrics.item_snapshot`) and a scrape serves the latest
  reading with its age;
- batches by status, the halt switch;
- stage outputs written since the previous scrape (primary-key range), which feed the
  ``batchline_stage_seconds`` histogram and ``batchline_errors_total``: both count
  from the exporter's start, like any Prometheus counter (the history is read
  :data:`MAX_OUTPUTS_PER_SCRAPE` rows per scrape at most), each id range once it
  has settled (:data:`SETTLE_SECONDS`).

Every metric is named and explained in docs/metrics.md.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Final

import redis
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from ledger import metrics_queries as q
from ledger.notifications import unsent_summary
from metrics.item_snapshot import ItemCountSnapshots
from metrics.keys import (
    lane_queue_keys,
    progress_key,
    rate_bucket_key,
    slot_key,
    slot_key_pattern,
)
from pipeline.lanes import PRIORITIES
from pipeline.limits import RateSpec
from pipeline.settings import get_settings
from pipeline.stage_registry import STAGE_NAMES, stage_for_state
from pipeline.states import BatchStatus, ItemState

#: Upper bounds (seconds) of ``batchline_stage_seconds``: a QC check to a slow writer.
STAGE_SECONDS_BUCKETS: Final = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
#: Stage outputs one scrape reads at most, so a first scrape over years of history
#: stays short; the next scrapes catch up.
MAX_OUTPUTS_PER_SCRAPE: Final = 200_000
#: How long new stage outputs wait before they are counted: a transaction that took an
#: id first may commit after one that took a later id (see _StageOutputTotals).
SETTLE_SECONDS: Final = 30.0
#: Every metric family a scrape yields (docs/metrics.md explains each; a test holds
#: the scrape to this list, and the alert rules in deploy/prometheus to it).
EXPORTED_METRICS: Final = frozenset(
    {
        "batchline_lane_messages",
        "batchline_pool_items",
        "batchline_items",
        "batchline_batches",
        "batchline_oldest_waiting_seconds",
        "batchline_running_batch_idle_seconds",
        "batchline_slots_in_use",
        "batchline_slots_limit",
        "batchline_rate_tokens",
        "batchline_stage_seconds",
        "batchline_errors",
        "batchline_halted",
        "batchline_notifications_unsent",
        "batchline_notification_oldest_unsent_seconds",
        "batchline_scrape_seconds",
        "batchline_item_counts_age_seconds",
        "batchline_item_counts_read_seconds",
    }
)
#: The concurrency caps a scrape reports, with the setting holding each limit.
SLOT_SCOPES: Final = ("global", "customer", "publisher")


class _StageOutputTotals:
    """Counts of stage outputs since the exporter started, advanced by id as ids settle.

    Ids are taken when a row is inserted, and rows become visible when their
    transaction commits. So a scrape can see id 101 before a slower transaction commits
    id 100. An id range is therefore counted only once ``settle_seconds`` have passed
    since a scrape saw its top id. A row still uncommitted that long after its id was
    passed would be missed; chunk transactions commit within milliseconds of inserting.
    """

    def __init__(self, settle_seconds: float, clock: Callable[[], float]) -> None:
        self.settle_seconds = settle_seconds
        self.clock = clock
        #: (when a scrape saw it, the newest output id then), oldest first
        self.seen: deque[tuple[float, int]] = deque()
        self.settled = 0
        self.after = 0
        self.buckets: dict[str, list[int]] = defaultdict(
            lambda: [0] * (len(STAGE_SECONDS_BUCKETS) + 1)
        )
        self.sums: dict[str, float] = defaultdict(float)
        self.errors: dict[tuple[str, str], int] = defaultdict(int)
        self.lock = threading.Lock()

    def advance(self, session: Session) -> None:
        now = self.clock()
        self.seen.append((now, q.last_output_id(session)))
        while self.seen and self.seen[0][0] <= now - self.settle_seconds:
            self.settled = max(self.settled, self.seen.popleft()[1])
        upto = min(self.settled, self.after + MAX_OUTPUTS_PER_SCRAPE)
        if upto <= self.after:
            return
        for stage, bucket, count, seconds in q.duration_buckets(
            session, STAGE_SECONDS_BUCKETS, self.after, upto
        ):
            # width_bucket: 0 below the first bound... len(bounds) at or above the last;
            # Prometheus's buckets are "<= le", so a run exactly on a bound lands one
            # bucket high: at most a bound's worth of rounding, on runs timed in floats.
            self.buckets[stage][int(bucket)] += int(count)
            self.sums[stage] += float(seconds or 0.0)
        for category, error_class, count in q.failures_between(session, self.after, upto):
            self.errors[(category, error_class)] += int(count)
        self.after = upto


class BatchlineCollector(Collector):
    """Reads batchline's state at each scrape and yields it as Prometheus metrics.

    Args:
        engine: the ledger's engine (default: this process's, from ``DATABASE_URL``).
        client: a Redis client with decoded responses (default: this process's).
        settle_seconds: how long a range of new stage outputs waits before it is
            counted (see :class:`_StageOutputTotals`).
        clock: monotonic seconds, for the settling and the order counts' age.
        refresh_seconds: how often a background thread re-reads the order counts
            (see :mod:`metrics.item_snapshot`); 0: each scrape reads them.
    """

    def __init__(
        self,
        engine: Engine | None = None,
        client: redis.Redis | None = None,
        *,
        settle_seconds: float = SETTLE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        refresh_seconds: float = 0.0,
    ) -> None:
        self._engine = engine
        self._client = client
        self._outputs = _StageOutputTotals(settle_seconds, clock)
        self.item_counts = ItemCountSnapshots(self._read_item_counts, refresh_seconds, clock)
        self._running: list[str] = []
        self.last_scrape_seconds = 0.0

    def _redis(self) -> redis.Redis:
        if self._client is None:
            from metrics.redis_client import redis_client

            self._client = redis_client()
        return self._client

    def describe(self) -> Iterable[Metric]:
        """Nothing up front: the registry must not scrape the ledger at registration."""
        return []

    def collect(self) -> Iterable[Metric]:
        """Read the ledger and Redis once and yield every metric family."""
        started = time.perf_counter()
        metrics = [*self._ledger_metrics(), *self._redis_metrics()]
        self.last_scrape_seconds = time.perf_counter() - started
        scrape = GaugeMetricFamily(
            "batchline_scrape_seconds", "How long reading the ledger and Redis took this scrape."
        )
        scrape.add_metric([], self.last_scrape_seconds)
        return [*metrics, scrape]

    def _session(self) -> Session:
        from ledger.db import engine

        return Session(self._engine or engine())

    def _read_item_counts(self) -> Sequence[Any]:
        with self._session() as session, session.begin():
            return q.unfinished_item_counts(session)

    def _ledger_metrics(self) -> list[Metric]:
        counts, age = self.item_counts.latest()
        with self._session() as session, session.begin():
            batches, running = q.batch_status_counts(session)
            halted = q.halt_reason(session)
            unsent, oldest_unsent = unsent_summary(session)
            with self._outputs.lock:
                self._outputs.advance(session)
                histogram = self._histogram()
                errors = self._errors()
        self._running = running
        return [
            *_item_metrics(counts.rows),
            _single(
                "batchline_item_counts_age_seconds",
                "How old the order counts (batchline_items, batchline_pool_items,"
                " batchline_oldest_waiting_seconds) are: read in the background.",
                age,
            ),
            _single(
                "batchline_item_counts_read_seconds",
                "How long the ledger took to count the orders (the latest reading).",
                counts.read_seconds,
            ),
            _labelled(
                "batchline_batches",
                "Batches by status.",
                "status",
                {s.value: batches.get(s.value, 0) for s in BatchStatus},
            ),
            _single(
                "batchline_halted",
                "1 while the system is halted (see the halt reason).",
                1 if halted else 0,
            ),
            _single(
                "batchline_notifications_unsent",
                "Notifications recorded and not yet sent (receiver down, sender died):"
                " the sweeper sends them again.",
                unsent,
            ),
            _single(
                "batchline_notification_oldest_unsent_seconds",
                "How long the oldest unsent notification has waited (0 when none waits).",
                oldest_unsent,
            ),
            histogram,
            errors,
        ]

    def _histogram(self) -> Metric:
        family = HistogramMetricFamily(
            "batchline_stage_seconds",
            "Handler time of stage runs, by stage (since the exporter started).",
            labels=["stage"],
        )
        for stage in sorted(set(STAGE_NAMES) | set(self._outputs.buckets)):
            counts = self._outputs.buckets[stage]
            cumulative, running = [], 0
            for bound, count in zip((*STAGE_SECONDS_BUCKETS, float("inf")), counts, strict=True):
                running += count
                cumulative.append((_le(bound), running))
            family.add_metric([stage], cumulative, self._outputs.sums[stage])
        return family

    def _errors(self) -> Metric:
        family = CounterMetricFamily(
            "batchline_errors",
            "Failed stage runs by error category and class (since the exporter started).",
            labels=["category", "error_class"],
        )
        for (category, error_class), count in sorted(self._outputs.errors.items()):
            family.add_metric([category, error_class], count)
        return family

    def _redis_metrics(self) -> list[Metric]:
        client = self._redis()
        settings = get_settings()
        pipe = client.pipeline(transaction=False)
        pipe.time()
        for lane in PRIORITIES:
            for key in lane_queue_keys(lane):
                pipe.llen(key)
        for batch_id in self._running:
            pipe.hget(progress_key(batch_id), "updated_at")
        limits = settings.rate_limits()
        # Per-key services keep a bucket per key: only one-bucket services are reported.
        services = [s for s, spec in limits.items() if not spec.per_key and not spec.per_day]
        for service in services:
            pipe.hmget(rate_bucket_key(service), "tokens", "ts")
        server_time, *replies = pipe.execute()
        now_ms = server_time[0] * 1000 + server_time[1] / 1000
        steps = len(lane_queue_keys(PRIORITIES[0]))
        lanes: dict[str, int] = {
            lane: sum(replies[i * steps : (i + 1) * steps]) for i, lane in enumerate(PRIORITIES)
        }
        replies = replies[steps * len(PRIORITIES) :]
        idle = _idle_seconds(replies[: len(self._running)], now_ms / 1000)
        buckets = replies[len(self._running) :]
        return [
            _labelled(
                "batchline_lane_messages",
                "Messages queued in each lane's Redis list.",
                "lane",
                lanes,
            ),
            _single(
                "batchline_running_batch_idle_seconds",
                "Longest time any RUNNING batch has gone without a chunk finishing.",
                idle,
            ),
            *self._slot_metrics(client, now_ms),
            _labelled(
                "batchline_rate_tokens",
                "Tokens in each service's rate-limit bucket now (burst when untouched).",
                "service",
                {s: _tokens(limits[s], b, now_ms) for s, b in zip(services, buckets, strict=True)},
            ),
        ]

    def _slot_metrics(self, client: redis.Redis, now_ms: float) -> list[Metric]:
        settings = get_settings()
        limits = {
            "global": settings.batch_cap_global,
            "customer": settings.batch_cap_per_customer,
            "publisher": settings.batch_cap_per_publisher,
        }
        keys = [slot_key("global"), *client.scan_iter(match=slot_key_pattern(), count=1000)]
        keys = list(dict.fromkeys(keys))
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.zcount(key, f"({now_ms}", "+inf")
        in_use = dict.fromkeys(SLOT_SCOPES, 0)
        prefix = slot_key("")
        for key, count in zip(keys, pipe.execute(), strict=True):
            scope = key.removeprefix(prefix).rstrip(":").split(":", 1)[0]
            if scope in in_use:
                in_use[scope] = max(in_use[scope], int(count))
        return [
            _labelled(
                "batchline_slots_in_use",
                "Concurrency slots held: global, and the busiest customer's and publisher's.",
                "scope",
                in_use,
            ),
            _labelled(
                "batchline_slots_limit", "The concurrency caps (0: no cap).", "scope", limits
            ),
        ]


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


def _single(name: str, documentation: str, value: float) -> Metric:
    family = GaugeMetricFamily(name, documentation)
    family.add_metric([], value)
    return family


def _labelled(name: str, documentation: str, label: str, values: Mapping[str, Any]) -> Metric:
    family = GaugeMetricFamily(name, documentation, labels=[label])
    for key, value in values.items():
        family.add_metric([key], float(value))
    return family


def _item_metrics(rows: Sequence[Any]) -> Iterator[Metric]:
    states = dict.fromkeys((s.value for s in ItemState), 0)
    pooled = {(lane, stage): 0 for lane in PRIORITIES for stage in STAGE_NAMES}
    oldest: dict[str, float] = dict.fromkeys(PRIORITIES, 0.0)
    for lane, state, in_pool, count, oldest_seconds in rows:
        states[state] = states.get(state, 0) + int(count)
        if in_pool:
            key = (lane, stage_for_state(state).name)
            pooled[key] = pooled.get(key, 0) + int(count)
            oldest[lane] = max(oldest.get(lane, 0.0), float(oldest_seconds or 0.0))
    yield _labelled("batchline_items", "Orders of unfinished batches, by state.", "state", states)
    family = GaugeMetricFamily(
        "batchline_pool_items",
        "Orders waiting in the ledger's work pool, by lane and the stage that takes them next.",
        labels=["lane", "stage"],
    )
    for (lane, stage), count in pooled.items():
        family.add_metric([lane, stage], count)
    yield family
    yield _labelled(
        "batchline_oldest_waiting_seconds",
        "How long the longest-waiting order of each lane has waited in the pool.",
        "lane",
        oldest,
    )


def _idle_seconds(updated: Sequence[str | None], now: float) -> float:
    stamps = [float(value) for value in updated if value]
    return max((now - stamp for stamp in stamps), default=0.0)


def _tokens(spec: RateSpec, bucket: Sequence[str | None], now_ms: float) -> float:
    tokens, stamp = bucket
    if tokens is None or stamp is None:
        return float(spec.burst)
    refill = max(0.0, now_ms - float(stamp)) * spec.per_minute / 60_000
    return round(min(float(spec.burst), float(tokens) + refill), 3)
