"""A stack of its own for chaos tests: servers we may kill, workers, beat, short timeouts.

``make test`` runs the bounded scale (``--chaos-scale=small``); ``make chaos``
runs the full one and writes its figures to ``--chaos-report``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cli.embedded import EmbeddedPostgres, EmbeddedValkey
from cli.workers import ALL_LANES, QueueKind, spawn_beat, spawn_worker, stop_workers
from tests.support import apply_environment, restore_environment, seed_sample_catalog
from tests.support_processes import child_pids

# Short timeouts so that recovery is seen in seconds; the relations the settings
# class enforces (lease and visibility above the hard limit) still hold.
CHAOS_SETTINGS = {
    "BATCH_TASK_SOFT_TIME_LIMIT": "8",
    "BATCH_TASK_TIME_LIMIT": "10",
    # A call may start just before the soft limit and run until its HTTP timeout; a
    # killed worker cannot end it, so leases and the visibility timeout outlast that
    # (8 + 12 s: the settings refuse less), or its slot is taken again mid-call.
    "WRITER_TIMEOUT_SECONDS": "12",
    "DELIVERY_TIMEOUT_SECONDS": "5",
    "BATCH_LEASE_SECONDS": "22",
    "BATCH_VISIBILITY_TIMEOUT": "25",
    "BATCH_SWEEP_INTERVAL_SECONDS": "1",
    "BATCH_SWEEP_GRACE_SECONDS": "2",
    # Without the default preflight limit (100/min): faults, not pacing, set the pace here.
    "BATCH_RATE_LIMITS": "writer=60/min:20",
}


def io_threads() -> int:
    """Chunks the I/O threads worker runs at once: ``BATCH_IO_WORKER_THREADS``, as
    ``batchline worker`` reads it (at least 1: these stacks always start that worker)."""
    from pipeline.settings import get_settings

    return max(1, get_settings().batch_io_worker_threads)


#: The bounded scale's limits, half the full scale's: a killed or frozen worker's chunks
#: come back after 12 s instead of 25 s, which is most of what a small run waits for.
#: The same relations hold: a slow call (soft limit + HTTP timeout, 4 + 6 s) still ends
#: before its lease and the visibility timeout run out.
SMALL_LIMITS = {
    "BATCH_TASK_SOFT_TIME_LIMIT": "4",
    "BATCH_TASK_TIME_LIMIT": "5",
    "WRITER_TIMEOUT_SECONDS": "6",
    "DELIVERY_TIMEOUT_SECONDS": "5",
    "BATCH_LEASE_SECONDS": "11",
    "BATCH_VISIBILITY_TIMEOUT": "12",
}


@dataclass(frozen=True)
class ChaosScale:
    """How hard a chaos run pushes, and the limits its stacks run under."""

    name: str
    orders: int
    kills: int
    duplicates: int
    #: overrides of :data:`CHAOS_SETTINGS` at this scale
    limits: dict[str, str] = field(default_factory=dict)

    def settings(self) -> dict[str, str]:
        """The chaos stack's settings at this scale (:data:`CHAOS_SETTINGS` and its limits)."""
        return {**CHAOS_SETTINGS, **self.limits}

    def setting(self, name: str) -> float:
        """One of :meth:`settings` as a number (a limit, in seconds)."""
        return float(self.settings()[name])


SCALES = {
    "small": ChaosScale("small", orders=300, kills=2, duplicates=40, limits=SMALL_LIMITS),
    "full": ChaosScale("full", orders=2000, kills=5, duplicates=400),
}


@pytest.fixture(scope="session")
def chaos_scale(request: pytest.FixtureRequest) -> ChaosScale:
    return SCALES[str(request.config.getoption("--chaos-scale"))]


@pytest.fixture(scope="session")
def chaos_report(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """Figures each chaos test records; written out at the end when asked."""
    figures: dict[str, Any] = {}
    yield figures
    target = str(request.config.getoption("--chaos-report"))
    if target:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        Path(target).write_text(json.dumps(figures, indent=2, default=str))


@dataclass
class ChaosStack:
    """Servers and processes a chaos test may hurt, and ways to hurt them."""

    valkey: EmbeddedValkey
    postgres: EmbeddedPostgres
    env: dict[str, str]
    log_dir: Path
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    beat: subprocess.Popen[bytes] | None = None
    started: int = 0
    #: main worker pid -> the queues it consumes
    kinds: dict[int, QueueKind] = field(default_factory=dict)

    def start_worker(self, kind: QueueKind = "all") -> subprocess.Popen[bytes]:
        """Start one more worker on every lane (as a supervisor would after a crash).

        ``kind="io"``: the threads-pool worker ``batchline worker`` runs beside its
        processes for writing and delivery chunks (killing it kills all its chunks).
        """
        self.started += 1
        name = f"chaos{self.started}"
        worker = spawn_worker(
            ALL_LANES,
            concurrency=io_threads() if kind == "io" else 2,
            name=name,
            env=self.env,
            log_path=self.log_dir / f"{name}.log",
            kind=kind,
        )
        self.workers.append(worker)
        self.kinds[worker.pid] = kind
        return worker

    def worker_pids(self) -> list[int]:
        """Main worker processes and their pool children, all alive."""
        pids: list[int] = []
        for worker in self.workers:
            if worker.poll() is None:
                pids.append(worker.pid)
                pids.extend(_children(worker.pid))
        return pids

    def kill_random_worker_process(self, rng: random.Random) -> str:
        """SIGKILL a main worker or a pool child; replace a dead main worker."""
        victim = rng.choice(self.worker_pids())
        main = next((w for w in self.workers if w.pid == victim), None)
        os.kill(victim, signal.SIGKILL)
        if main is None:
            return "pool child"
        main.wait()
        kind = self.kinds[victim]
        self.start_worker(kind)
        return "I/O threads worker" if kind == "io" else "main worker"

    def kill_and_restart(self, kind: QueueKind) -> None:
        """SIGKILL the live worker of ``kind`` with its whole pool, then start another.

        For the I/O threads worker this is one process: every chunk it runs dies
        mid-call, and only the broker's redelivery and the sweeper bring them back.
        """
        victim = next(w for w in self.workers if w.poll() is None and self.kinds[w.pid] == kind)
        children = _children(victim.pid)
        victim.send_signal(signal.SIGKILL)
        for child in children:
            os.kill(child, signal.SIGKILL)
        victim.wait()
        self.start_worker(kind)

    def replace_exited(self) -> list[str]:
        """Start a worker in place of each that exited; what was replaced.

        As the deployment's supervisor does: ``batchline worker`` exits when one of its
        workers does, and systemd, Compose (``restart: unless-stopped``) or Kubernetes
        start it again. A server restart can end a worker: kombu's Redis transport has a
        known race on connection loss (celery/kombu#659 and kin: ``'NoneType' object has
        no attribute ...`` from the broadcast channel's reconnect, "Unrecoverable
        error"). Call it from the main thread: a worker dies with the thread that
        started it (``die_with_parent``).
        """
        replaced: list[str] = []
        for worker in [w for w in self.workers if w.poll() is not None and w.pid in self.kinds]:
            kind = self.kinds.pop(worker.pid)
            self.workers.remove(worker)
            replaced.append(f"{kind} worker exited with {worker.returncode}")
            self.start_worker(kind)
        return replaced

    def stop_processes(self) -> None:
        """Stop beat and every worker."""
        stop_workers([*self.workers, *([self.beat] if self.beat else [])])
        self.workers.clear()


_children = child_pids  # the shared /proc reader (tests/support_processes.py)


def _wait_for_workers(count: int, timeout: float = 240.0) -> None:
    from celery_app import app

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(app.control.ping(timeout=0.5)) >= count:
            return
    raise TimeoutError(f"{count} chaos workers did not answer within {timeout}s")


@contextmanager
def running_chaos_stack(
    tmp_path_factory: pytest.TempPathFactory,
    scale: ChaosScale,
    extra_env: dict[str, str] | None = None,
    kinds: Sequence[QueueKind] = ("all", "io"),
    prepare: Callable[[], None] | None = None,
) -> Iterator[ChaosStack]:
    """Fresh servers, one worker per ``kinds`` and beat; the environment is restored after.

    ``extra_env`` adds to (or overrides) the ``scale``'s settings; ``prepare`` runs
    once the ledger is migrated and seeded, before any worker starts.
    """
    saved = dict(os.environ)
    valkey, postgres = EmbeddedValkey(), EmbeddedPostgres()
    try:
        env = {
            "REDIS_URL": valkey.start(),
            "DATABASE_URL": postgres.start(),
            "BATCH_OUTPUT_DIR": str(tmp_path_factory.mktemp("chaos-outbox")),
            **scale.settings(),
            **(extra_env or {}),
        }
        apply_environment(env)
        from ledger.migrate import upgrade
        from pipeline.settings import get_settings

        upgrade(get_settings().require_database_url())
        seed_sample_catalog()
        if prepare is not None:
            prepare()
        stack = ChaosStack(valkey, postgres, env, tmp_path_factory.mktemp("chaos-logs"))
        for kind in kinds:
            stack.start_worker(kind)
        stack.beat = spawn_beat(
            env=env, log_path=stack.log_dir / "beat.log", schedule_path=stack.log_dir / "schedule"
        )
        _wait_for_workers(len(kinds))
        yield stack
        stack.stop_processes()
    finally:
        from ledger.db import dispose_engine

        dispose_engine()
        valkey.stop()
        postgres.stop()
        restore_environment(saved)


@pytest.fixture(scope="module")
def chaos_stack(
    tmp_path_factory: pytest.TempPathFactory, chaos_scale: ChaosScale
) -> Iterator[ChaosStack]:
    """Fresh servers, two workers and beat; the environment is restored after.

    One prefork worker on every queue, and one threads-pool worker on the lanes'
    I/O queues as ``batchline worker`` starts it, so writing and delivery chunks
    run in both kinds of pool and kills hit both.
    """
    with running_chaos_stack(tmp_path_factory, chaos_scale) as stack:
        yield stack
