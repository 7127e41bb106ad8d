"""Start and stop Celery worker processes that die with the process that started them.

The standard library only: ``cli.supervisor`` imports it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, NamedTuple

from cli.children import die_with_parent

#: Queue suffixes in the order a worker polls them. Housekeeping comes first: a sweep
#: takes milliseconds, and behind a deep low backlog it would otherwise never run.
ALL_LANES = ("maintenance", "recovery", "high", "normal", "low")
WORK_LANES = ("high", "normal", "low")
DEFAULT_LANES = ALL_LANES
#: Which of a work lane's two queues a worker consumes: both; the CPU-bound stages'
#: (``batch.<lane>``, with housekeeping); or the I/O-bound stages' (``batch.<lane>.io``).
QueueKind = Literal["all", "cpu", "io"]


def queues_for(lanes: Sequence[str], kind: QueueKind = "all") -> str:
    """Celery ``-Q`` value for ``lanes``, in strict priority order.

    Raises:
        ValueError: no lane, an unknown lane, or an I/O worker without a work lane.
    """
    if not lanes:
        # An empty -Q would make Celery consume every queue.
        raise ValueError(f"name at least one lane: {', '.join(ALL_LANES)}")
    unknown = set(lanes) - set(ALL_LANES)
    if unknown:
        raise ValueError(f"unknown lane(s): {', '.join(sorted(unknown))}")
    queues = [q for lane in ALL_LANES if lane in lanes for q in _lane_queues(lane, kind)]
    if not queues:
        raise ValueError(f"an I/O worker needs a work lane: {', '.join(WORK_LANES)}")
    return ",".join(queues)


def _lane_queues(lane: str, kind: QueueKind) -> list[str]:
    cpu = [f"batch.{lane}"] if kind != "io" else []
    io = [f"batch.{lane}.io"] if kind != "cpu" and lane in WORK_LANES else []
    return cpu + io


def worker_command(
    lanes: Sequence[str],
    concurrency: int,
    name: str,
    *,
    loglevel: str = "WARNING",
    events: bool = False,
    kind: QueueKind = "all",
) -> list[str]:
    """The command line of one worker consuming ``lanes`` in strict order.

    ``kind="io"`` gives a threads-pool worker for the lanes' I/O queues: its
    ``concurrency`` is how many chunks it runs at once, each waiting on outside
    calls; every other worker is a prefork pool of ``concurrency`` processes.
    """
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "celery_app",
        "worker",
        "-Q",
        queues_for(lanes, kind),
        *(["-P", "threads"] if kind == "io" else []),
        "-c",
        str(concurrency),
        "-n",
        f"{name}@%h",
        "--loglevel",
        loglevel,
        # Gossip and mingle only cost start-up time and broadcast traffic here.
        "--without-gossip",
        "--without-mingle",
    ]
    return [*command, "-E"] if events else command


class WorkerSpec(NamedTuple):
    """One Celery worker of a group: its name, lanes, concurrency and queue kind."""

    name: str
    lanes: Sequence[str]
    concurrency: int
    kind: QueueKind = "all"


def default_workers(
    lanes: Sequence[str], concurrency: int, io_threads: int, name: str, io_processes: int = 1
) -> list[WorkerSpec]:
    """What ``batchline worker`` runs: prefork processes, and a threads worker for I/O.

    The prefork processes run the CPU-bound stages (preflight, QC) and housekeeping;
    one threads-pool worker runs ``io_threads`` chunks of the I/O-bound stages at
    once, so a process busy with QC never leaves the writer's slots idle. With
    ``io_threads`` 0, or no work lane, one prefork worker consumes every queue.
    ``io_processes`` threads workers (``-io``, ``-io2``, ...) share the I/O queues.
    """
    if io_threads == 0 or not set(lanes) & set(WORK_LANES):
        return [WorkerSpec(name, lanes, concurrency, "all")]
    io_names = [f"{name}-io{n + 1 if n else ''}" for n in range(io_processes)]
    return [
        WorkerSpec(name, lanes, concurrency, "cpu"),
        *(WorkerSpec(io_name, lanes, io_threads, "io") for io_name in io_names),
    ]


def spawn_worker(
    lanes: Sequence[str],
    *,
    concurrency: int,
    name: str,
    env: Mapping[str, str],
    log_path: Path,
    loglevel: str = "WARNING",
    kind: QueueKind = "all",
) -> subprocess.Popen[bytes]:
    """Start one worker as a child that is killed if this process dies.

    ``loglevel`` is Celery's (its own and kombu's lines); batchline's follow ``LOG_LEVEL``.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            worker_command(lanes, concurrency, name, loglevel=loglevel, kind=kind),
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent(),
            cwd=Path.cwd(),
        )


def beat_command(schedule_path: Path) -> list[str]:
    """Celery beat as its docs start it, keeping its schedule state at ``schedule_path``."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "celery_app",
        "beat",
        "--schedule",
        str(schedule_path),
        "--loglevel",
        "WARNING",
    ]


def spawn_beat(
    *, env: Mapping[str, str], log_path: Path, schedule_path: Path
) -> subprocess.Popen[bytes]:
    """Start celery beat (the sweeper's clock) as a child that dies with this process."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            beat_command(schedule_path),
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent(),
            cwd=Path.cwd(),
        )


def stop_workers(processes: Sequence[subprocess.Popen[bytes]], timeout: float = 20.0) -> None:
    """Ask workers to finish their current task (SIGTERM), then kill what is left."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def running_workers(
    specs: Sequence[WorkerSpec | tuple[str, Sequence[str], int]],
    *,
    env: Mapping[str, str],
    log_dir: Path,
    with_beat: bool = False,
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Run one worker per spec (name, lanes, concurrency, kind) (and beat) for the block."""
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for spec in specs:
            name, lanes, concurrency, kind = WorkerSpec(*spec)
            processes.append(
                spawn_worker(
                    lanes,
                    concurrency=concurrency,
                    name=name,
                    env=env,
                    log_path=log_dir / f"{name}.log",
                    kind=kind,
                )
            )
        if with_beat:
            schedule = log_dir / "beat-schedule"
            processes.append(
                spawn_beat(env=env, log_path=log_dir / "beat.log", schedule_path=schedule)
            )
        yield processes
    finally:
        stop_workers(processes)
