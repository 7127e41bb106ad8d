"""Short throughput runs, repeated: the median of a few instead of one lucky draw.

A run of a few seconds is mostly its workers' fill and drain, and on this machine
one such run spreads widely: C at 10,000 orders (about 5 s of work) ran at 1,141 to
1,922 orders/s with the same code in one session (bench/NOTES.md, "Short runs
repeated"). A target comparing two sizes then follows the short run's luck. A run
shorter than :data:`SHORT_RUN_S` is therefore run again until there are ``repeats``
of it, and the median run (by orders/s) is kept, with every run's rate recorded in
its ``extra["repeats"]`` so the page can show the spread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from bench.results import RunResult

#: Runs of A-D that took less than this (processing seconds) are repeated.
SHORT_RUN_S: Final = 30.0
#: How many runs of a short one there are in all, by default.
DEFAULT_REPEATS: Final = 3
#: ``extra`` key listing every repeat's orders/s, in the order they ran.
REPEATS_KEY: Final = "repeats"


def median_run(runs: list[RunResult]) -> RunResult:
    """The run with the median orders/s (the lower middle one of an even count)."""
    if not runs:
        raise ValueError("no runs to choose from")
    ranked = sorted(runs, key=lambda run: run.items_per_s)
    return ranked[(len(ranked) - 1) // 2]


def repeated_if_short(
    call: Callable[..., RunResult], repeats: int = DEFAULT_REPEATS
) -> Callable[..., RunResult]:
    """``call`` run once, and when that took under :data:`SHORT_RUN_S` until ``repeats`` runs.

    The median run is returned; when more than one ran, its ``extra`` lists every
    run's orders/s under :data:`REPEATS_KEY`.
    """

    def run(*args: Any) -> RunResult:
        runs = [call(*args)]
        while len(runs) < repeats and runs[0].seconds < SHORT_RUN_S:
            runs.append(call(*args))
        chosen = median_run(runs)
        if len(runs) > 1:
            rates = [round(r.items_per_s, 1) for r in runs]
            chosen.extra = {**chosen.extra, REPEATS_KEY: rates}
        return chosen

    return run
