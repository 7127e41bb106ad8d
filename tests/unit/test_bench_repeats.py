"""Short throughput runs are repeated and the median one is kept, with every rate shown."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bench.repeats import REPEATS_KEY, SHORT_RUN_S, median_run, repeated_if_short
from bench.report import render
from bench.results import Results, RunResult


def _run(orders: int, seconds: float, extra: dict[str, Any] | None = None) -> RunResult:
    return RunResult("C", orders, seconds, orders / seconds, 0, 0, 0, 0, dict(extra or {}))


def _scripted(*seconds: float) -> tuple[list[int], Callable[..., RunResult]]:
    """A scenario whose successive runs take ``seconds``; the list counts its calls."""
    calls: list[int] = []

    def scenario(bench: object, orders: int) -> RunResult:
        calls.append(orders)
        return _run(orders, seconds[len(calls) - 1], {"run": len(calls)})

    return calls, scenario


def test_a_short_run_is_repeated_and_the_median_one_is_kept_with_every_rate() -> None:
    calls, scenario = _scripted(5.0, 4.0, 8.0)  # 2,000, 2,500 and 1,250 orders/s

    chosen = repeated_if_short(scenario, 3)(None, 10_000)

    assert calls == [10_000, 10_000, 10_000]
    assert chosen.extra["run"] == 1  # 2,000 orders/s: the middle of the three
    assert chosen.extra[REPEATS_KEY] == [2000.0, 2500.0, 1250.0]


def test_a_long_run_is_run_once_and_says_nothing_of_repeats() -> None:
    calls, scenario = _scripted(SHORT_RUN_S + 1, 1.0)

    chosen = repeated_if_short(scenario, 3)(None, 10_000)

    assert calls == [10_000]
    assert REPEATS_KEY not in chosen.extra


def test_one_repeat_means_one_run() -> None:
    calls, scenario = _scripted(1.0, 1.0)

    chosen = repeated_if_short(scenario, 1)(None, 1_000)

    assert calls == [1_000]
    assert REPEATS_KEY not in chosen.extra


def test_the_median_of_an_even_count_is_the_lower_middle_and_of_none_an_error() -> None:
    runs = [_run(100, s) for s in (1.0, 2.0, 4.0, 5.0)]  # 100, 50, 25, 20 orders/s
    assert median_run(runs).items_per_s == 25.0
    with pytest.raises(ValueError, match="no runs"):
        median_run([])


def test_the_page_names_the_repeated_cells_and_lists_their_rates(tmp_path: Path) -> None:
    results = Results(
        meta={"command": "python -m bench.run"},
        runs=[
            _run(10_000, 5.0, {REPEATS_KEY: [1_900.0, 2_000.0, 2_400.0]}),
            _run(100_000, 60.0),
        ],
    )
    results.save(tmp_path / "r.json")

    render(tmp_path / "r.json", tmp_path / "B.md", tmp_path / "c.png")

    page = (tmp_path / "B.md").read_text()
    [note] = [line for line in page.splitlines() if line.startswith("Runs that took under")]
    assert note.endswith("in the order they ran: C at 10,000: 1,900, 2,000, 2,400.")
