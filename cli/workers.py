"""Start and stop Celery worker processes that die with the process that started them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from cli.embedded import die_with_parent

#: Queue suffixes in the order a worker polls them. Housekeeping comes first: a sweep
#: takes milliseconds, and behind a deep low backlog it would otherwise never run.
ALL_LANES = ("maintenance", "recovery", "high", "normal", "low")
WORK_LANES = ("high", "normal", "low")
DEFAULT_LANES = ALL_LANES


def queues_for(lanes: Sequence[str]) -> str:
    """Celery ``-Q`` value for ``lanes``, in strict priority order."""
    if not lanes:
        # An empty -Q would make Celery consume every queue.
        raise ValueError(f"name at least one lane: {', '.join(ALL_LANES)}")
    unknown = set(lanes) - set(ALL_LANES)
    if unknown:
        raise ValueError(f"unknown lane(s): {', '.join(sorted(unknown))}")
    return ",".join(f"batch.{lane}" for lane in ALL_LANES if lane in lanes)


def worker_command(
    lanes: Sequence[str],
    concurrency: int,
    name: str,
    *,
    loglevel: str = "WARNING",
    events: bool = False,
) -> list[str]:
    """The command line of one worker (prefork pool) consuming ``lanes`` in strict order."""
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "celery_app",
        "worker",
        "-Q",
        queues_for(lanes),
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


def spawn_worker(
    lanes: Sequence[str],
    *,
    concurrency: int,
    name: str,
    env: Mapping[str, str],
    log_path: Path,
    loglevel: str = "WARNING",
) -> subprocess.Popen[bytes]:
    """Start one worker as a child that is killed if this process dies.

    ``loglevel`` is Celery's (its own and kombu's lines); batchline's follow ``LOG_LEVEL``.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            worker_command(lanes, concurrency, name, loglevel=loglevel),
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent(),
            cwd=Path.cwd(),
        )


def spawn_beat(
    *, env: Mapping[str, str], log_path: Path, schedule_path: Path
) -> subprocess.Popen[bytes]:
    """Start celery beat (the sweeper's clock) as a child that dies with this process."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [
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
    with log_path.open("ab") as log:
        return subprocess.Popen(
            command,
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
    specs: Sequence[tuple[str, Sequence[str], int]],
    *,
    env: Mapping[str, str],
    log_dir: Path,
    with_beat: bool = False,
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Run one worker per ``(name, lanes, concurrency)`` (and beat) for the ``with`` block."""
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for name, lanes, concurrency in specs:
            log_path = log_dir / f"{name}.log"
            processes.append(
                spawn_worker(lanes, concurrency=concurrency, name=name, env=env, log_path=log_path)
            )
        if with_beat:
            schedule = log_dir / "beat-schedule"
            processes.append(
                spawn_beat(env=env, log_path=log_dir / "beat.log", schedule_path=schedule)
            )
        yield processes
    finally:
        stop_workers(processes)
