"""Test support for real processes: a worker's pool processes, and whether a pid still runs."""

from __future__ import annotations

from pathlib import Path


def child_pids(pid: int) -> list[int]:
    """The direct children of ``pid`` (a Celery worker's pool processes), from ``/proc``.

    Reads ``/proc/<pid>/task/<pid>/children`` (Linux 3.5+): the children of the main
    thread, which is where Celery's prefork pool forks them. A process that has
    already gone has no children.
    """
    try:
        found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [int(child) for child in found]


def is_running(pid: int) -> bool:
    """Whether ``pid`` exists and is neither a zombie nor dead (so it may still act)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")
