"""A run's profile over time: orders done per tenth of the batch, and CPU per process.

A total rate hides whether a run reached a steady state: a short run is mostly
warm-up and drain. The sampler polls the batch's progress hash (delivered plus
failed orders) and, each time another tenth of the batch is done, takes the CPU
time of the benchmark's own processes (workers, PostgreSQL, Redis, this process)
and of the whole machine, so each slice says how fast it went and which process
was busy. The middle 80 % (from 10 % to 90 % done) is the steady rate: it leaves
out the pipeline's fill and its drain.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psutil

from metrics.keys import progress_key
from metrics.redis_client import redis_client

#: Slices per run (a tenth of the batch each).
SLICES = 10
_POLL_S = 0.05
#: Polls between two CPU readings (psutil's walk is not free; a process that
#: exits between two readings loses at most this many polls of its CPU).
_NOTE_EVERY = 10


@dataclass(frozen=True)
class Mark:
    """Orders done at a moment, with the CPU seconds each process group had used."""

    at: float
    done: int
    cpu: dict[str, float]


def _cpu_of(processes: Sequence[psutil.Process]) -> dict[int, float]:
    seconds: dict[int, float] = {}
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.Error:  # exited since it was listed: its time is gone with it
            continue
        seconds[process.pid] = times.user + times.system
    return seconds


def _children(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _machine_busy() -> float:
    times = psutil.cpu_times()
    return float(times.user + times.system + getattr(times, "nice", 0.0))


@dataclass
class ProcessGroups:
    """Process trees counted together, by name (``workers``, ``postgres``, ...)."""

    #: each group's root process ids; a group counts its roots' whole trees
    roots: dict[str, list[int]] = field(default_factory=dict)
    #: groups that count their roots alone (this process: its children are the servers)
    alone: frozenset[str] = frozenset()
    #: every process id each group had at some call of :meth:`cpu`
    members_seen: dict[str, set[int]] = field(default_factory=dict)
    _seen: dict[int, float] = field(default_factory=dict)
    _totals: dict[str, float] = field(default_factory=dict)
    _started: bool = False

    def _members(self, name: str) -> list[psutil.Process]:
        if name in self.alone:
            return [p for pid in self.roots[name] for p in _children(pid)[:1]]
        return [p for pid in self.roots[name] for p in _children(pid)]

    def cpu(self) -> dict[str, float]:
        """CPU seconds each group used since the first call, plus ``machine`` (every process's).

        A process that came and went between two calls is missed.
        """
        for name in self.roots:
            total = self._totals.get(name, 0.0)
            members = self._members(name)
            self.members_seen.setdefault(name, set()).update(p.pid for p in members)
            for pid, seconds in _cpu_of(members).items():
                # Seen first now: on the first call a baseline, later its whole life
                # (it started since the previous call).
                total += seconds - self._seen.get(pid, seconds if not self._started else 0.0)
                self._seen[pid] = seconds
            self._totals[name] = total
        self._started = True
        return {**self._totals, "machine": _machine_busy()}


class ProgressSampler(threading.Thread):
    """Polls one batch's progress until stopped; marks every tenth of ``total``."""

    def __init__(self, batch_id: str, total: int, groups: ProcessGroups) -> None:
        """Prepare (not start) the sampler of ``batch_id`` (``total`` orders)."""
        super().__init__(daemon=True, name=f"progress-{batch_id}")
        self._key = progress_key(batch_id)
        self._total = total
        self._groups = groups
        self._stop_event = threading.Event()
        self.marks: list[Mark] = []

    def _mark(self, done: int) -> None:
        self.marks.append(Mark(time.monotonic(), done, self._groups.cpu()))

    def run(self) -> None:
        """Mark the start, then every tenth of the batch as it is crossed."""
        client = redis_client()
        self._mark(0)
        step = max(1, self._total // SLICES)
        polls = 0
        while not self._stop_event.is_set():
            polls += 1
            if polls % _NOTE_EVERY == 0:
                # Often: a pool child replaced between two marks takes its CPU with it.
                self._groups.cpu()
            done = sum(int(v or 0) for v in client.hmget(self._key, ["completed", "failed"]))
            if done >= self.marks[-1].done + step or (done >= self._total > self.marks[-1].done):
                self._mark(done)
            time.sleep(_POLL_S)

    def stop(self) -> list[dict[str, Any]]:
        """Stop sampling and return the slices (see :func:`slices`)."""
        self._stop_event.set()
        self.join(timeout=5)
        return slices(self.marks)


def slices(marks: Sequence[Mark]) -> list[dict[str, Any]]:
    """Each pair of consecutive marks as a slice: orders, seconds, orders/s, cores used.

    ``cores`` per group is CPU seconds over wall seconds (2.0: two cores busy);
    ``machine`` counts every process on the machine, other people's included.
    """
    out: list[dict[str, Any]] = []
    for before, after in itertools.pairwise(marks):
        seconds = max(after.at - before.at, 1e-9)
        out.append(
            {
                "done": after.done,
                "orders": after.done - before.done,
                "seconds": round(seconds, 3),
                "items_per_s": round((after.done - before.done) / seconds, 1),
                "cores": {
                    name: round((after.cpu[name] - before.cpu.get(name, 0.0)) / seconds, 2)
                    for name in after.cpu
                },
            }
        )
    return out


def middle_rate(parts: Sequence[dict[str, Any]]) -> float | None:
    """Orders/s over the middle slices (10 % to 90 % done): the run without fill and drain."""
    middle = list(parts[1:-1])
    if len(middle) < 1:
        return None
    seconds = sum(float(part["seconds"]) for part in middle)
    return round(sum(int(part["orders"]) for part in middle) / seconds, 1)


def sample_progress(
    batch_id: str, total: int, groups: ProcessGroups
) -> Callable[[], list[dict[str, Any]]]:
    """Start sampling ``batch_id``; return the function that stops it and gives the slices."""
    sampler = ProgressSampler(batch_id, total, groups)
    sampler.start()
    return sampler.stop


def _server_pids() -> dict[str, list[int]]:
    """PostgreSQL's postmaster and the Redis server, when they run on this machine."""
    from sqlalchemy import text

    from ledger.db import engine

    pids: dict[str, list[int]] = {"postgres": [], "redis": []}
    with engine().connect() as connection:
        backend = int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())
    redis_pid = int(redis_client().info("server").get("process_id", 0))
    try:
        pids["postgres"] = [psutil.Process(backend).ppid()]
        pids["redis"] = [redis_pid] if psutil.pid_exists(redis_pid) else []
    except psutil.Error:  # a server elsewhere: its CPU is not ours to count
        pass
    return pids


def bench_groups(worker_pids: Sequence[int]) -> ProcessGroups:
    """The benchmark's processes: the workers, PostgreSQL, Redis and this process."""
    return ProcessGroups(
        roots={"workers": list(worker_pids), **_server_pids(), "bench": [os.getpid()]},
        alone=frozenset({"bench"}),
    )
