"""Render a results file as docs/BENCHMARKS.md and its throughput chart (PNG)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from bench.repeats import REPEATS_KEY, SHORT_RUN_S
from bench.results import Results, RunResult

SIZE_SCENARIOS = ("A", "B", "C", "D")
LABELS = {
    "A": "A naive chain of 4 tasks per order",
    "B": "B one no-op task per order (raw Celery floor)",
    "C": "C batchline, no-op handlers + ledger",
    "D": "D batchline, real handlers",
}
RATIOS = (("C", "A"), ("C", "B"), ("D", "A"))
_NOTES = Path(__file__).resolve().parent / "NOTES.md"
_MISSING = "—"
# Fairness tables put these columns first, in this order, then any others.
_CUSTOMER_COLUMNS = ("customer", "orders", "alone_s", "shared_s", "ratio")


def fmt(value: Any) -> str:
    """Format a figure for a table: thousands separators from 100 up, else three digits."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _MISSING if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"  # three significant digits: 41.7, 4.43, 0.952


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """A Markdown table; numbers right-aligned and formatted with :func:`fmt`."""
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---", *["---:"] * (len(header) - 1)]) + "|",
    ]
    lines += ["| " + " | ".join(fmt(cell) for cell in row) + " |" for row in rows]
    return lines


def size_runs(runs: Sequence[RunResult]) -> dict[tuple[str, int], RunResult]:
    """(scenario, orders) -> run for scenarios A-D; a later run replaces an earlier one."""
    return {(run.scenario, run.orders): run for run in runs if run.scenario in SIZE_SCENARIOS}


#: (command, what it does) listed under "How to reproduce".
COMMANDS = (
    ("make bench", "every scenario at 1,000 / 10,000 / 100,000 orders (D up to 10,000)"),
    ("make bench-full", "the same, and D at 100,000 orders (25-40 min more)"),
    ('make bench BENCH_ARGS="--sizes 1000,10000"', "smaller sizes only"),
    ('make bench BENCH_ARGS="--scenarios A,B,C,D"', "throughput only"),
    ('make bench BENCH_ARGS="--scenarios priority,fairness"', "latency and fairness only"),
    (
        'make bench BENCH_ARGS="--scenarios E --e-runs 2:2000,10:2000 --append"',
        "real latency (E), added to the results file",
    ),
    ('make bench BENCH_ARGS="--render-only"', "redraw this page from docs/bench-results.json"),
    ("REDIS_URL=redis://host:6379/0 DATABASE_URL=postgresql://u@host/db make bench", "own servers"),
)


def _machine(machine: dict[str, Any]) -> list[tuple[str, Any]]:
    if not machine:
        return []
    software = ("python", "celery", "kombu", "redis_py")
    return [
        ("commit", machine.get("commit")),
        (
            "machine",
            f"{machine.get('cpu_count')} CPUs ({machine.get('cpu_model')}), "
            f"{machine.get('memory_gb')} GB RAM, {machine.get('os')}",
        ),
        ("software", ", ".join(f"{key} {machine[key]}" for key in software if key in machine)),
        ("servers", f"{machine.get('redis_server')}, PostgreSQL {machine.get('postgres')}"),
    ]


def _reproduce(meta: dict[str, Any]) -> list[str]:
    width = max(len(command) for command, _ in COMMANDS) + 2
    commands = [f"{command:<{width}}# {purpose}" for command, purpose in COMMANDS]
    facts = [
        ("date (UTC)", meta.get("date")),
        ("command", f"`{meta['command']}`" if meta.get("command") else None),
        *_machine(meta.get("machine", {})),
    ]
    return [
        "## How to reproduce",
        "",
        "```sh",
        *commands,
        "```",
        "",
        "Without `REDIS_URL` / `DATABASE_URL` the harness starts embedded Valkey and PostgreSQL.",
        "It uses Redis database 11 (flushed first) and a throw-away PostgreSQL database.",
        "",
        "The figures below were recorded with:",
        "",
        *[f"- **{name}**: {value}" for name, value in facts if value],
        "",
    ]


def _throughput(runs: dict[tuple[str, int], RunResult]) -> list[str]:
    present = [s for s in SIZE_SCENARIOS if any(key[0] == s for key in runs)]
    ratios = [(a, b) for a, b in RATIOS if a in present and b in present]
    header = ["orders", *[f"{s} items/s" for s in present], *[f"{a}/{b}" for a, b in ratios]]
    rows = []
    for size in sorted({key[1] for key in runs}):
        speed = {s: runs[(s, size)].items_per_s for s in present if (s, size) in runs}
        cells = [speed.get(s) for s in present]
        cells += [speed[a] / speed[b] if a in speed and b in speed else None for a, b in ratios]
        rows.append([size, *cells])
    return ["## Throughput", "", *table(header, rows), "", *_repeats_note(runs)]


def _repeats_note(runs: dict[tuple[str, int], RunResult]) -> list[str]:
    """Which cells are the median of repeated short runs, and every repeat's rate."""
    repeated = [
        f"{scenario} at {size:,}: {', '.join(fmt(rate) for rate in run.extra[REPEATS_KEY])}"
        for (scenario, size), run in sorted(runs.items())
        if run.extra.get(REPEATS_KEY)
    ]
    if not repeated:
        return []
    return [
        f"Runs that took under {SHORT_RUN_S:g} s were repeated (`--short-repeats`) and "
        "the tables show the median run; each repeat's items/s, in the order they ran: "
        f"{'; '.join(repeated)}.",
        "",
    ]


def _resources(runs: dict[tuple[str, int], RunResult]) -> list[str]:
    header = [
        "scenario",
        "orders",
        "processing s",
        "submit s",
        "submitter RSS MB",
        "worker RSS MB",
        "Redis bytes/queued order",
    ]
    rows = [
        [
            run.scenario,
            run.orders,
            run.seconds,
            run.submit_seconds,
            run.submitter_rss_mb,
            run.worker_rss_mb,
            run.redis_bytes_per_order,
        ]
        for (_, _), run in sorted(runs.items())
    ]
    return ["## Submission, memory and queue size", "", *table(header, rows), ""]


def _scalars(values: dict[str, Any]) -> list[str]:
    """Bullet list of the entries that are neither tables nor rows."""
    return [f"- {key}: {fmt(value)}" for key, value in values.items()]


def _priority(run: RunResult) -> list[str]:
    configs = {name: value for name, value in run.extra.items() if isinstance(value, dict)}
    others = {name: value for name, value in run.extra.items() if name not in configs}
    metrics = list(dict.fromkeys(metric for values in configs.values() for metric in values))
    rows = [[name, *[values.get(metric) for metric in metrics]] for name, values in configs.items()]
    return ["## Priority", "", *table(["configuration", *metrics], rows), "", *_scalars(others), ""]


def _fairness(run: RunResult) -> list[str]:
    customers: list[dict[str, Any]] = list(run.extra.get("customers", []))
    caps: dict[str, Any] = dict(run.extra.get("caps", {}))
    others = {k: v for k, v in run.extra.items() if k not in ("customers", "caps")}
    keys = dict.fromkeys(key for customer in customers for key in customer)
    columns = [c for c in _CUSTOMER_COLUMNS if c in keys] + [
        k for k in keys if k not in _CUSTOMER_COLUMNS
    ]
    lines = ["## Fairness", ""]
    if customers:
        lines += [*table(columns, [[c.get(col) for col in columns] for c in customers]), ""]
    if caps:
        lines += [*table(["cap", "value"], [[k, v] for k, v in caps.items()]), ""]
    return [*lines, *_scalars(others), ""]


def _one_offs(runs: Sequence[RunResult]) -> list[str]:
    lines: list[str] = []
    latest = {run.scenario: run for run in runs}
    if "priority" in latest:
        lines += _priority(latest["priority"])
    if "fairness" in latest:
        lines += _fairness(latest["fairness"])
    return lines


def _skipped(meta: dict[str, Any]) -> list[str]:
    skipped = meta.get("skipped", [])
    if not skipped:
        return []
    return ["## Runs left out (`--max-orders`)", "", *(f"- {s}" for s in skipped), ""]


def _failures(meta: dict[str, Any]) -> list[str]:
    failures = meta.get("failures", [])
    if not failures:
        return []
    items = [
        f"- {f['scenario']} ({f.get('orders') or 'one-off'}): `{f['error']}`" for f in failures
    ]
    return ["## Runs that failed", "", *items, ""]


def _notes() -> list[str]:
    if not _NOTES.exists():
        return []
    return ["## Reading the figures", "", _NOTES.read_text().rstrip(), ""]


def render_chart(runs: dict[tuple[str, int], RunResult], chart_path: Path) -> None:
    """Draw items/s against orders (log x axis), one line per scenario A-D present."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    sizes = sorted({key[1] for key in runs})
    figure, axes = plt.subplots(figsize=(8, 4.8))
    for scenario in SIZE_SCENARIOS:
        points = sorted((size, run.items_per_s) for (s, size), run in runs.items() if s == scenario)
        if points:
            xs, ys = zip(*points, strict=True)
            axes.plot(xs, ys, marker="o", label=LABELS[scenario])
    axes.set_xscale("log")
    axes.set_xticks(sizes, [f"{size:,}" for size in sizes])
    axes.minorticks_off()
    axes.set_xlabel("orders in the batch")
    axes.set_ylabel("orders per second")
    axes.set_ylim(bottom=0)
    axes.grid(True, alpha=0.3)
    axes.legend()
    axes.set_title("Throughput (higher is better)")
    figure.tight_layout()
    chart_path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(chart_path, dpi=120)
    plt.close(figure)


def realistic_chart_path(chart_path: Path) -> Path:
    """Where scenario E's chart goes: beside the throughput chart."""
    return chart_path.with_name("bench-e-in-flight.png")


def _realistic(runs: Sequence[RunResult], doc_path: Path, chart_path: Path) -> list[str]:
    """Scenario E's section, with its chart drawn beside the throughput chart.

    Imported late: bench.report_realistic uses this module's table helpers.
    """
    from bench import report_realistic

    e_chart = realistic_chart_path(chart_path)
    drawn = report_realistic.render_chart(runs, e_chart)
    link = Path(os.path.relpath(e_chart, doc_path.parent)).as_posix() if drawn else None
    return report_realistic.section(runs, link)


def _targets(runs: Sequence[RunResult]) -> list[str]:
    """Issue 15's targets table (imported late: bench.targets uses this module's helpers)."""
    from bench import targets

    return targets.section(runs)


def render(results_path: Path, doc_path: Path, chart_path: Path) -> None:
    """Write the benchmark document and its chart from a results file.

    Args:
        results_path: JSON written by ``bench.run``.
        doc_path: the Markdown document (docs/BENCHMARKS.md).
        chart_path: the PNG chart; linked from the document by a relative path.
    """
    results = Results.load(results_path)
    runs = size_runs(results.runs)
    lines = ["# batchline benchmarks", ""]
    if runs:
        render_chart(runs, chart_path)
        link = Path(os.path.relpath(chart_path, doc_path.parent)).as_posix()
        lines += [f"![Throughput by batch size]({link})", ""]
    lines += _reproduce(results.meta) + _targets(results.runs)
    if runs:
        lines += _throughput(runs) + _resources(runs)
    lines += _one_offs(results.runs) + _realistic(results.runs, doc_path, chart_path)
    lines += _failures(results.meta) + _skipped(results.meta) + _notes()
    doc_path.parent.mkdir(parents=True, exist_ok=True)
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines))  # sections end with a blank line
    doc_path.write_text(text.rstrip() + "\n")
