"""Turn progress counters into the status a user sees: percentages, velocity and an ETA."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.stage_registry import STAGES


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
    """Return progress and success percentages (0-100), ``remaining``, ``velocity`` and the ETA.

    ``velocity`` is terminal items per second since the batch started (0.0 until
    the first item ends). The ETA divides the remaining items by it; it is
    ``None`` (``eta_human`` "unknown") until the first item ends, and 0 once the
    batch is finished.
    """
    terminal = counters.completed + counters.failed + counters.cancelled
    ended = counters.completed + counters.failed
    progress = 100.0 * terminal / counters.total if counters.total else 100.0
    success = 100.0 * counters.completed / ended if ended else None
    eta = 0.0 if finished else _eta(counters, terminal)
    return {
        "progress_percentage": round(progress, 2),
        "success_rate": round(success, 2) if success is not None else None,
        "remaining": max(counters.total - terminal, 0),
        "velocity": round(_velocity(counters, terminal), 3),
        "estimated_time_remaining": eta,
        "eta_human": human_duration(eta),
    }


def _velocity(counters: Counters, terminal: int) -> float:
    elapsed = counters.updated_at - counters.started_at
    return terminal / elapsed if terminal and elapsed > 0 else 0.0


def _eta(counters: Counters, terminal: int) -> float | None:
    throughput = _velocity(counters, terminal)
    if throughput <= 0:
        return None
    return round((counters.total - terminal) / throughput, 1)


def human_duration(seconds: float | None) -> str:
    """``3725.0`` -> ``"1 h 2 min"``, ``75`` -> ``"1 min 15 s"``, ``None`` -> ``"unknown"``.

    Two units at most: an ETA is an estimate, its seconds are noise after an hour.
    """
    if seconds is None:
        return "unknown"
    whole = round(seconds)
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "min"), (secs, "s")]
    shown = [f"{value} {unit}" for value, unit in parts if value]
    return " ".join(shown[:2]) or "0 s"


def items_at_stage(state_counts: Mapping[str, int]) -> dict[str, int]:
    """Per stage, how many items wait for it or are in it now (from the ledger's states).

    An item waits for a stage while its state is one the stage claims from
    (``entry_states``) or the stage's own ``work_state``.
    """
    return {
        stage.name: sum(
            state_counts.get(state.value, 0) for state in {*stage.entry_states, stage.work_state}
        )
        for stage in STAGES
    }
