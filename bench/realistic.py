"""Scenario E: real latency. The writer and the publishers are HTTP services that take time.

The workers are started exactly as ``batchline worker`` starts them with no
options (``python -m cli worker``: every lane, ``BATCH_WORKER_CONCURRENCY``
prefork processes, 1 by default, and ``BATCH_IO_WORKER_PROCESSES`` threads workers,
2). ``WRITER_BACKEND=openai`` points at a local OpenAI-compatible mock
(``bench.mock_services.MockWriter``) answering after the run's latency ± 20 %,
and ``DELIVERY_BACKEND=webhook`` at a local publisher answering in 200 ms with 2 %
of 503 + ``Retry-After``; every sample publisher's
``webhook_url`` in the catalog points at it. The writer's rate limit is set to
100 requests/s (burst 100), four times what the global cap allows at 2 s, so the
caps and the code, not the token bucket, set the pace.

Measured: orders/s from the start of submission to the last effective publish;
writer calls in flight (peak and time-weighted mean) from the mock's own log;
the global semaphore's holders by stage, worker RSS (sum and per process) and
CPU, sampled every 0.5 s; effective publishes per order from the mock publisher
(every order must be published exactly once). Celery beat runs beside the
workers, as in a deployment, so the sweeper re-feeds anything a lost feed left
in the pool.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import select

from bench.batchline import state_counts, wait_final, with_env
from bench.e_bound import ideal_run, ranked_customers
from bench.inflight import bin_width, in_flight, series
from bench.mock_services import MockPublisher, MockWriter
from bench.realistic_config import RealisticOptions, RealisticRun
from bench.results import RunResult
from bench.services import BenchEnv, flush_broker
from bench.submitter import run_submitter
from bench.workers import WorkerGroup
from celery_app import app
from cli.sample_orders import load_catalog
from cli.workers import beat_command
from ledger.catalog import upsert_catalog
from ledger.db import transaction
from ledger.models import Item
from metrics.keys import slot_key
from metrics.redis_client import redis_client
from pipeline.catalog import Catalog, PublisherProfile
from pipeline.settings import Settings
from tasks.limits.semaphore import holders
from tasks.slots import parse_holder

#: ``batchline worker`` with every option at its default (it execs the same Celery
#: command line, so the pid we start is the worker's main process).
WORKER_COMMAND = (sys.executable, "-m", "cli", "worker")
#: 100 requests/s, burst 100: 4x what 50 slots allow at 2 s, so never the bottleneck.
WRITER_RATE_LIMIT = "writer=6000/min:100"
_SAMPLE_INTERVAL_S = 0.5
_MIB = 2**20


def scenario_env(writer: MockWriter, latency_s: float, overrides: dict[str, str]) -> dict[str, str]:
    """Settings of the workers and the submitter: the mocks, the rate limit, ``overrides``."""
    return {
        "WRITER_BACKEND": "openai",
        "WRITER_URL": writer.url,
        "WRITER_API_KEY": "bench",
        "WRITER_MODEL": "bench-mock",
        # Generous: a timeout would retry and blur the latency being measured.
        "WRITER_TIMEOUT_SECONDS": str(max(60.0, 5 * latency_s)),
        "DELIVERY_BACKEND": "webhook",
        "BATCH_RATE_LIMITS": WRITER_RATE_LIMIT,
        # httpx honours proxy variables; the mocks are local.
        "NO_PROXY": "127.0.0.1,localhost",
        **overrides,
    }


@contextmanager
def webhook_catalog(url: str) -> Iterator[None]:
    """Point every sample publisher's ``webhook_url`` at ``url`` for the block, then restore."""
    original = load_catalog().publishers
    pointed = tuple(
        PublisherProfile.model_validate({**p.model_dump(mode="json"), "webhook_url": url})
        for p in original
    )
    with transaction() as session:
        upsert_catalog(session, Catalog(publishers=pointed))
    try:
        yield
    finally:
        with transaction() as session:
            upsert_catalog(session, Catalog(publishers=original))


def _tree(root: psutil.Process) -> list[psutil.Process]:
    """``root`` and its live descendants (empty when ``root`` is gone)."""
    try:
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _cpu_seconds(root: psutil.Process) -> float:
    """CPU time of ``root``, its live descendants and its reaped children (pool recycling)."""
    try:
        times = root.cpu_times()
    except psutil.Error:
        return 0.0
    # A process that exited meanwhile is missing below: its time moved to children_*.
    reaped = float(times.children_user + times.children_system)
    return reaped + sum(_cpu_by_pid(root).values())


def _pss_bytes(pid: int) -> int:
    """The process's proportional set size: each shared page divided among its sharers.

    The sum of RSS counts a page the prefork processes share (the imports, the
    language model loaded before the fork) once per process; the sum of PSS counts
    it once, so it is the memory the worker tree really takes. 0 when unreadable.
    """
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _cpu_by_pid(root: psutil.Process) -> dict[int, float]:
    """CPU seconds (user + system) of each live process of the tree, by pid."""
    seconds: dict[int, float] = {}
    for member in _tree(root):
        with contextlib.suppress(psutil.Error):
            times = member.cpu_times()
            seconds[member.pid] = times.user + times.system
    return seconds


def _busiest_percent(before: dict[int, float], after: dict[int, float], wall_s: float) -> float:
    """The largest share of one core a single process of the tree used over the run.

    A process started during the run (a replaced pool process) counts from zero.
    The threads worker runs every writer and webhook call under one interpreter
    lock: near 100 % it, not the machine, sets the pace.
    """
    used = [seconds - before.get(pid, 0.0) for pid, seconds in after.items()]
    return round(100 * max(used, default=0.0) / wall_s, 1) if wall_s > 0 else 0.0


@dataclass
class _Samples:
    """What the sampler saw: per-pid peak RSS, total RSS and PSS peaks, global slot holders."""

    rss_peak_by_pid: dict[int, int] = field(default_factory=dict)
    rss_total_peak: int = 0
    pss_total_peak: int = 0
    slots: list[tuple[float, int, int]] = field(default_factory=list)  # (t, writing, delivery)

    def since(self, lead: float) -> _Samples:
        """These samples with the slot series from ``lead`` seconds on, timed from there."""
        slots = [(round(t - lead, 2), w, d) for t, w, d in self.slots if t >= lead]
        return _Samples(self.rss_peak_by_pid, self.rss_total_peak, self.pss_total_peak, slots)


class _Sampler(threading.Thread):
    """Every 0.5 s: the worker tree's RSS per process and the global semaphore's holders."""

    def __init__(self, root_pid: int, origin: float) -> None:
        super().__init__(name="bench-e-sampler", daemon=True)
        self._root = psutil.Process(root_pid)
        self._origin = origin
        self._stopped = threading.Event()
        self.samples = _Samples()

    def run(self) -> None:
        while not self._stopped.wait(_SAMPLE_INTERVAL_S):
            self.sample()

    def sample(self) -> None:
        self._sample_rss()
        self._sample_slots()

    def _sample_rss(self) -> None:
        total, pss = 0, 0
        for member in _tree(self._root):
            try:
                rss = member.memory_info().rss
            except psutil.Error:
                continue
            total += rss
            pss += _pss_bytes(member.pid)
            peaks = self.samples.rss_peak_by_pid
            peaks[member.pid] = max(peaks.get(member.pid, 0), rss)
        self.samples.rss_total_peak = max(self.samples.rss_total_peak, total)
        self.samples.pss_total_peak = max(self.samples.pss_total_peak, pss)

    def _sample_slots(self) -> None:
        stages = Counter(parse_holder(h)[1] for h in holders(redis_client(), slot_key("global")))
        elapsed = time.monotonic() - self._origin
        self.samples.slots.append((round(elapsed, 2), stages["writing"], stages["delivery"]))

    def stop(self) -> None:
        self._stopped.set()
        self.join()
        self.sample()


def _order_ids(batch_id: str) -> list[str]:
    with transaction() as session:
        return list(session.scalars(select(Item.order_id).where(Item.batch_id == batch_id)))


def _deliveries(publisher: MockPublisher, order_ids: Sequence[str]) -> dict[str, int]:
    """Orders published exactly once, more than once, never; and the webhook's counters."""
    publishes = publisher.publishes()
    once = sum(1 for order in order_ids if publishes[order] == 1)
    twice = sum(1 for order in order_ids if publishes[order] > 1)
    return {
        "delivered_once": once,
        "delivered_more_than_once": twice,
        "never_delivered": len(order_ids) - once - twice,
        **{f"webhook_{name}": count for name, count in publisher.counts().items()},
    }


def _writer_figures(
    writer: MockWriter, origin: float, finished: float, log_path: Path
) -> dict[str, Any]:
    """Calls in flight from the mock's log (also saved as JSON lines for the smoke test)."""
    calls = [c for c in writer.calls() if c.start >= origin]
    intervals = [(c.start - origin, c.end - origin) for c in calls]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text("".join(json.dumps([s, e]) + "\n" for s, e in intervals))
    run_window = in_flight(intervals, (0.0, finished - origin))
    busy_window = in_flight(intervals)  # first call start to last call end
    width = bin_width(finished - origin)
    bins = max(1, int((finished - origin) // width) + 1)
    return {
        "writer_calls": len(calls),
        "writer_calls_failed": sum(1 for c in calls if c.status != 200),
        "writer_in_flight_peak": run_window.peak,
        "writer_in_flight_mean": round(run_window.mean, 2),
        "writer_in_flight_mean_while_writing": round(busy_window.mean, 2),
        "writer_call_log": str(log_path),
        "writer_in_flight_series": {"bin_s": width, "values": series(intervals, 0.0, width, bins)},
    }


def _slot_figures(samples: _Samples) -> dict[str, Any]:
    totals = [writing + delivery for _, writing, delivery in samples.slots]
    count = max(1, len(totals))
    return {
        "global_slots_peak": max(totals, default=0),
        "global_slots_mean": round(sum(totals) / count, 2),
        "global_slots_mean_writing": round(sum(s[1] for s in samples.slots) / count, 2),
        "global_slots_mean_delivery": round(sum(s[2] for s in samples.slots) / count, 2),
        "global_slots_series": [list(s) for s in samples.slots],
    }


def _rss_figures(samples: _Samples, root_pid: int) -> dict[str, Any]:
    pool = [rss for pid, rss in samples.rss_peak_by_pid.items() if pid != root_pid]
    return {
        "worker_rss_total_peak_mb": round(samples.rss_total_peak / _MIB, 1),
        "worker_pss_total_peak_mb": round(samples.pss_total_peak / _MIB, 1),
        "worker_rss_main_peak_mb": round(samples.rss_peak_by_pid.get(root_pid, 0) / _MIB, 1),
        "worker_rss_pool_process_peak_mb": round(max(pool, default=0) / _MIB, 1),
        "worker_pool_processes_seen": len(pool),
    }


def _cpu_figures(cpu_seconds: float, wall_s: float, machine_percent: float) -> dict[str, Any]:
    cores = os.cpu_count() or 1
    return {
        "cores": cores,
        "worker_cpu_percent_of_machine": round(100 * cpu_seconds / (wall_s * cores), 1),
        "machine_cpu_percent": round(machine_percent, 1),
        "load_average_1m_end": round(os.getloadavg()[0], 2),
    }


class _Watch:
    """The worker tree from :meth:`start` to :meth:`stop`: samples, CPU time, machine load."""

    def __init__(self, root_pid: int) -> None:
        self.root_pid = root_pid
        self._root = psutil.Process(root_pid)

    def start(self) -> None:
        """Start the clocks (both: the mock logs monotonic time) and the sampler."""
        self.load_start = os.getloadavg()[0]
        self._cpu_start = _cpu_seconds(self._root)
        self._cpu_by_pid_start = _cpu_by_pid(self._root)
        psutil.cpu_percent(None)  # the next call reports the machine's use since this one
        self.wall, self.mono = time.time(), time.monotonic()
        self.sampler = _Sampler(self.root_pid, self.mono)
        self.sampler.start()

    def stop(self, lead: float = 0.0) -> dict[str, Any]:
        """Stop sampling; return the RSS, slot and CPU figures.

        ``lead``: seconds from :meth:`start` to the submission; the slot figures
        count from there (their series' times too).
        """
        self.sampler.stop()
        cpu = _cpu_seconds(self._root) - self._cpu_start
        busiest = _busiest_percent(
            self._cpu_by_pid_start, _cpu_by_pid(self._root), time.monotonic() - self.mono
        )
        machine = psutil.cpu_percent(None)
        return {
            "load_average_1m_start": round(self.load_start, 2),
            **_slot_figures(self.sampler.samples.since(lead)),
            **_rss_figures(self.sampler.samples, self.root_pid),
            **_cpu_figures(cpu, time.monotonic() - self.mono, machine),
            "worker_cpu_busiest_process_percent_of_core": busiest,
        }


def _submit_and_wait(
    env: BenchEnv, run: RealisticRun, batch_id: str, publisher: MockPublisher
) -> tuple[dict[str, Any], float]:
    """Submit from a child process and wait for the batch to end.

    Returns:
        The submitter's figures, and the epoch time of the last effective publish.
    """
    submitted = run_submitter("batchline", run.orders, {"batch_id": batch_id}, env)
    # Each order is at least one writer call; allow for one call in flight at worst.
    wait_final(batch_id, timeout=300 + run.orders * run.latency_s)
    if publisher.counts()["effective"] == 0:  # no delivery time to measure to
        raise RuntimeError(f"batch {batch_id} delivered nothing: {state_counts(batch_id)}")
    return submitted, publisher.last_publish_at()


def _worker_settings(env: BenchEnv) -> Settings:
    """The settings the worker reads (its environment), to report its concurrency and caps."""
    saved = dict(os.environ)
    try:
        os.environ.update(env.env)
        return Settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _measure(
    bench: BenchEnv, run: RealisticRun, options: RealisticOptions, writer: MockWriter
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Start the workers, submit, wait; return the figures and the submitter's result."""
    publisher = MockPublisher(
        latency_s=options.webhook_latency_s, unavailable_rate=options.unavailable_rate
    )
    with publisher, webhook_catalog(publisher.url):
        flush_broker()  # after the catalog change: no stale cached profile survives
        env = with_env(bench, scenario_env(writer, run.latency_s, options.env))
        batch_id = f"bench-E-{run.latency_s:g}s-{run.orders}-{uuid.uuid4().hex[:6]}"
        name = f"realistic-{run.latency_s:g}s-{run.orders}"
        # (beat's RSS is not counted with the workers')
        beat = beat_command(bench.log_dir / f"{name}-beat-schedule")
        # Beat runs beside the workers as in a deployment: its sweeper feeds the lanes
        # again if a feed is lost (a Redis error in a refill stalled a run for good).
        with (
            WorkerGroup([beat], env, name=f"{name}-beat"),
            WorkerGroup([list(WORKER_COMMAND)], env, name=name) as group,
        ):
            group.wait_ready(app, 1)
            watch = _Watch(group.processes[0].pid)
            watch.start()
            submitted, last_publish = _submit_and_wait(env, run, batch_id, publisher)
            # From the submit call, as A-D count: before it the harness's child process
            # was starting Python and building the sample orders (about 2 s).
            lead = float(submitted["submit_began_at"]) - watch.wall
            watched = watch.stop(lead)
        began = watch.mono + lead
        finished = watch.mono + (last_publish - watch.wall)
        log_path = bench.log_dir / f"{name}-calls.jsonl"
        figures = {
            "batch_id": batch_id,
            "seconds": last_publish - watch.wall - lead,
            "submitter_start_up_s": round(lead, 2),
            **_writer_figures(writer, began, finished, log_path),
            **watched,
            **_deliveries(publisher, _order_ids(batch_id)),
            "states": state_counts(batch_id),
        }
    return figures, submitted


def run_realistic(bench: BenchEnv, run: RealisticRun, options: RealisticOptions) -> RunResult:
    """Scenario E at one writer latency; see the module docstring for what is measured."""
    with MockWriter(run.latency_s, jitter=options.jitter) as writer:
        figures, submitted = _measure(bench, run, options, writer)
    settings = _worker_settings(with_env(bench, scenario_env(writer, run.latency_s, options.env)))
    seconds = float(figures.pop("seconds"))
    # What strict priority order and the caps allow with no overhead (bench.e_bound).
    reference = ideal_run(
        ranked_customers(run.orders),
        latency_s=run.latency_s,
        jitter=options.jitter,
        cap_global=settings.batch_cap_global,
        cap_per_customer=settings.batch_cap_per_customer,
    )
    return RunResult(
        scenario="E",
        orders=run.orders,
        seconds=seconds,
        items_per_s=run.orders / seconds,
        submit_seconds=float(submitted["submit_seconds"]),
        submitter_rss_mb=float(submitted["rss_mb"]),
        worker_rss_mb=float(figures["worker_rss_total_peak_mb"]),
        redis_bytes_per_order=0.0,
        extra={
            "writer_latency_s": run.latency_s,
            "writer_jitter": options.jitter,
            "webhook_latency_s": options.webhook_latency_s,
            "webhook_unavailable_rate": options.unavailable_rate,
            "worker_command": "batchline worker (python -m cli worker), no options; celery beat",
            "worker_concurrency": settings.batch_worker_concurrency,
            "worker_io_threads": settings.batch_io_worker_threads,
            "worker_io_processes": settings.batch_io_worker_processes,
            "cap_global": settings.batch_cap_global,
            "cap_per_customer": settings.batch_cap_per_customer,
            "cap_per_publisher": settings.batch_cap_per_publisher,
            "writer_chunk": settings.batch_chunk_writing_optimal,
            "rate_limits": settings.batch_rate_limits,
            "strict_priority_reference_orders_per_s": round(reference.orders_per_s, 2),
            "settings": options.env,
            **figures,
        },
    )
