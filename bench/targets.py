"""Issue 15's targets in one table: each with the measured value, met or not.

Every figure comes from the results file the page is drawn from, so the table
says what was measured in the runs recorded, never what was hoped for. A target
whose run is missing reads "not run".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from bench.report import fmt, size_runs, table
from bench.report_realistic import e_target_rows, latest_by_latency
from bench.results import RunResult

#: Fairness: every small customer within this multiple of its alone-time.
FAIRNESS_RATIO: Final = 1.9
#: High orders behind the low backlog, shared workers: first-stage p95 and end-to-end ratio.
PRIORITY_FIRST_STAGE_P95_MS: Final = 100.0
PRIORITY_END_TO_END_RATIO: Final = 1.5
#: C against B and A at 10,000 orders; C and D's drift with size.
C_OVER_B: Final = 2.0
C_OVER_A: Final = 10.0
SIZE_DRIFT: Final = 0.10

#: What the steady row is, in its label.
STEADY_NOTE: Final = "10 % to 90 % done"

Row = list[Any]
#: The multiplication sign, spelled out (ruff flags the literal as ambiguous).
TIMES: Final = "\u00d7"


def verdict(ok: bool | None) -> str:
    """``yes``, a bold ``no``, or a dash when the figure is missing."""
    if ok is None:
        return "—"
    return "yes" if ok else "**no**"


def _speed(runs: dict[tuple[str, int], RunResult], scenario: str, size: int) -> float | None:
    run = runs.get((scenario, size))
    return run.items_per_s if run else None


def _steady(runs: dict[tuple[str, int], RunResult], scenario: str, size: int) -> float | None:
    run = runs.get((scenario, size))
    middle = run.extra.get("middle_items_per_s") if run else None
    return float(middle) if middle else None


def _ratio_row(label: str, top: float | None, bottom: float | None, goal: float) -> Row:
    if top is None or bottom is None:
        return [label, "not run", "—"]
    ratio = top / bottom
    return [label, f"{ratio:.2f} ({fmt(top)} / {fmt(bottom)})", verdict(ratio >= goal)]


def _drift_row(label: str, large: float | None, small: float | None) -> Row:
    if large is None or small is None:
        return [label, "not run", "—"]
    change = large / small - 1
    return [
        label,
        f"{change:+.1%} ({fmt(large)} vs {fmt(small)} orders/s)",
        verdict(change >= -SIZE_DRIFT),
    ]


def throughput_rows(runs: Sequence[RunResult]) -> list[Row]:
    """C against B and A at 10,000 orders; C and D from one size to the next."""
    by_size = size_runs(runs)
    c = _speed(by_size, "C", 10_000)
    return [
        _ratio_row(
            f"C ≥ {C_OVER_B:g}{TIMES} B at 10,000", c, _speed(by_size, "B", 10_000), C_OVER_B
        ),
        _ratio_row(
            f"C ≥ {C_OVER_A:g}{TIMES} A at 10,000", c, _speed(by_size, "A", 10_000), C_OVER_A
        ),
        _drift_row(
            f"C at 100,000 within {SIZE_DRIFT:.0%} of 10,000",
            _speed(by_size, "C", 100_000),
            c,
        ),
        # Not a target of the issue: the same comparison without each run's fill and
        # drain (a short run is more of both), from the run's own per-tenth profile.
        _drift_row(
            f"(C at 100,000 against 10,000, middle 80 % of each run: {STEADY_NOTE})",
            _steady(by_size, "C", 100_000),
            _steady(by_size, "C", 10_000),
        ),
        _drift_row(
            f"D at 10,000 within {SIZE_DRIFT:.0%} of 1,000",
            _speed(by_size, "D", 10_000),
            _speed(by_size, "D", 1_000),
        ),
    ]


def _latest(runs: Sequence[RunResult], scenario: str) -> RunResult | None:
    found = [run for run in runs if run.scenario == scenario]
    return found[-1] if found else None


def fairness_rows(run: RunResult | None) -> list[Row]:
    """The worst small customer's shared time against its alone-time."""
    label = f"fairness: every small customer within {FAIRNESS_RATIO:g}{TIMES} its alone-time"
    customers = list(run.extra.get("customers", [])) if run else []
    ratios = [float(c["ratio"]) for c in customers if c.get("ratio") is not None]
    if not ratios:
        return [[label, "not run", "—"]]
    worst = max(ratios)
    return [
        [label, f"worst {worst:.2f} ({len(ratios)} customers)", verdict(worst <= FAIRNESS_RATIO)]
    ]


def _backlog_row(run: RunResult | None) -> dict[str, Any] | None:
    """The priority scenario's shared-workers-behind-a-backlog configuration."""
    if run is None:
        return None
    for name, values in run.extra.items():
        # "default" (batchline worker's own pair) is the shared deployment now
        shared = "shared" in name or "default" in name
        if isinstance(values, dict) and shared and "backlog" in name:
            return values
    return None


def priority_rows(run: RunResult | None) -> list[Row]:
    """High orders behind the low backlog with shared workers only."""
    behind = "high behind 20,000 low, shared workers"
    first = f"{behind}: p95 to first stage ≤ {PRIORITY_FIRST_STAGE_P95_MS:g} ms"
    whole = f"{behind}: end to end ≤ {PRIORITY_END_TO_END_RATIO:g}{TIMES} idle"
    values = _backlog_row(run)
    if values is None:
        return [[first, "not run", "—"], [whole, "not run", "—"]]
    p95 = values.get("first_stage_p95_ms")
    ratio = values.get("delivered_p95_vs_idle")
    return [
        [
            first,
            f"{fmt(p95)} ms",
            verdict(None if p95 is None else p95 <= PRIORITY_FIRST_STAGE_P95_MS),
        ],
        [
            whole,
            f"{fmt(ratio)}{TIMES}",
            verdict(None if ratio is None else ratio <= PRIORITY_END_TO_END_RATIO),
        ],
    ]


def section(runs: Sequence[RunResult]) -> list[str]:
    """The "Targets (issue 15)" section: one row per target, from the recorded runs."""
    rows = [
        *e_target_rows(latest_by_latency(runs)),
        *fairness_rows(_latest(runs, "fairness")),
        *priority_rows(_latest(runs, "priority")),
        *throughput_rows(runs),
    ]
    return [
        "## Targets (issue 15)",
        "",
        "Each row is read from the runs recorded on this page (sections below); "
        '"not run" means the page has no run for it.',
        "",
        *table(["target", "measured", "met?"], rows),
        "",
    ]
