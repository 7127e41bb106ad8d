"""Turn progress counters into the status a user sees: percentages and an ETA."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Counters:
    """A batch's counters as read from Redis or rebuilt from the ledger."""

    total: int
    completed: int
    failed: int
    cancelled: int
    started_at: float
    updated_at: float


def summarize(counters: Counters, *, finished: bool) -> dict[str, Any]:
    """Return ``progress_percentage``, ``success_rate`` (both 0-100) and the ETA in seconds.

    The ETA divides the remaining items by the throughput measured so far
    (terminal items per second since the batch started); it is ``None`` until
    the first item ends, and 0 once the batch is finished.
    """
    terminal = counters.completed + counters.failed + counters.cancelled
    ended = counters.completed + counters.failed
    progress = 100.0 * terminal / counters.total if counters.total else 100.0
    success = 100.0 * counters.completed / ended if ended else None
    return {
        "progress_percentage": round(progress, 2),
        "success_rate": round(success, 2) if success is not None else None,
        "estimated_time_remaining": 0.0 if finished else _eta(counters, terminal),
    }


def _eta(counters: Counters, terminal: int) -> float | None:
    elapsed = counters.updated_at - counters.started_at
    if terminal == 0 or elapsed <= 0:
        return None
    throughput = terminal / elapsed
    return round((counters.total - terminal) / throughput, 1)
