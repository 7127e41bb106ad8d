"""Issue 15's targets table: every verdict comes from the recorded runs."""

from __future__ import annotations

from typing import Any

from bench.results import RunResult
from bench.targets import TIMES, fairness_rows, priority_rows, section, throughput_rows


def _run(scenario: str, orders: int, per_s: float, **extra: Any) -> RunResult:
    return RunResult(scenario, orders, orders / per_s if per_s else 0, per_s, 0, 0, 0, 0, extra)


def _verdicts(rows: list[list[Any]]) -> dict[str, str]:
    return {str(row[0]): str(row[2]) for row in rows}


def test_throughput_targets_are_ratios_of_the_recorded_speeds() -> None:
    runs = [
        _run("A", 10_000, 100.0),
        _run("B", 10_000, 500.0),
        _run("C", 10_000, 1_000.0),
        _run("C", 100_000, 905.0),
        _run("D", 1_000, 70.0),
        _run("D", 10_000, 60.0),
    ]
    verdicts = _verdicts(throughput_rows(runs))
    assert verdicts[f"C ≥ 2{TIMES} B at 10,000"] == "yes"  # exactly 2.0
    assert verdicts[f"C ≥ 10{TIMES} A at 10,000"] == "yes"
    assert verdicts["C at 100,000 within 10% of 10,000"] == "yes"  # -9.5 %
    assert verdicts["D at 10,000 within 10% of 1,000"] == "**no**"  # -14.3 %


def test_the_steady_size_row_compares_the_middle_rates_and_reads_not_run_without_them() -> None:
    runs = [
        _run("C", 10_000, 1_000.0, middle_items_per_s=1_200.0),
        _run("C", 100_000, 800.0, middle_items_per_s=1_100.0),
    ]
    steady = [row for row in throughput_rows(runs) if "middle 80 %" in str(row[0])]
    assert steady[0][1:] == ["-8.3% (1,100 vs 1,200 orders/s)", "yes"]
    unprofiled = [_run("C", 10_000, 1_000.0), _run("C", 100_000, 800.0)]
    steady = [row for row in throughput_rows(unprofiled) if "middle 80 %" in str(row[0])]
    assert steady[0][1:] == ["not run", "—"]


def test_a_missing_run_reads_not_run() -> None:
    rows = throughput_rows([_run("C", 10_000, 1_000.0)])
    assert all(row[1] == "not run" and row[2] == "—" for row in rows[:2])
    assert fairness_rows(None)[0][1] == "not run"
    assert [row[1] for row in priority_rows(None)] == ["not run", "not run"]


def test_fairness_takes_the_worst_customer() -> None:
    customers = [{"customer": f"c{n}", "ratio": ratio} for n, ratio in enumerate((1.7, 1.95, 1.8))]
    row = fairness_rows(_run("fairness", 0, 0, customers=customers))[0]
    assert row[1].startswith("worst 1.95") and row[2] == "**no**"


def test_priority_reads_the_shared_backlog_configuration() -> None:
    extra = {
        "shared, idle": {"first_stage_p95_ms": 12.0, "delivered_p95_vs_idle": None},
        "shared, low backlog": {"first_stage_p95_ms": 80.0, "delivered_p95_vs_idle": 1.6},
    }
    rows = priority_rows(_run("priority", 0, 0, **extra))
    assert [row[2] for row in rows] == ["yes", "**no**"]


def test_the_section_lists_every_target_once() -> None:
    lines = section([])
    assert lines[0] == "## Targets (issue 15)"
    body = [line for line in lines if line.startswith("| ") and "target" not in line]
    # E (orders/s and peaks at 2 and 10 s, RSS), fairness, priority, C/D and C's steady row
    assert len(body) == 5 + 1 + 2 + 4 + 1
    assert all(line.endswith("| not run | — |") for line in body)
