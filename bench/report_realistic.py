"""Scenario E's part of docs/BENCHMARKS.md: figures per writer latency, targets, chart."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.report import fmt, table
from bench.results import RunResult

#: Issue 15's targets: orders/s per writer latency (s), and worker RSS at 2 s.
ORDERS_PER_S_TARGETS = {2.0: 20.0, 10.0: 4.0}
RSS_TARGET_MB = 1024.0
RSS_TARGET_LATENCY_S = 2.0

#: (label, a RunResult attribute or a key of its extra) per table row.
_ROWS: tuple[tuple[str, str], ...] = (
    ("orders", "orders"),
    ("orders/s (submission to last delivery)", "items_per_s"),
    (
        "orders/s, strict priority with these caps and no overhead (bench.e_bound)",
        "strict_priority_reference_orders_per_s",
    ),
    ("seconds", "seconds"),
    ("submitter's start-up before submitting, s (not counted)", "submitter_start_up_s"),
    ("writer calls in flight, peak (mock's log)", "writer_in_flight_peak"),
    ("writer calls in flight, mean over the run", "writer_in_flight_mean"),
    ("writer calls in flight, mean while writing", "writer_in_flight_mean_while_writing"),
    ("global slots held, peak (Redis, every 0.5 s)", "global_slots_peak"),
    ("global slots held, mean: writing", "global_slots_mean_writing"),
    ("global slots held, mean: delivery", "global_slots_mean_delivery"),
    ("worker RSS MB, sum of processes (peak)", "worker_rss_total_peak_mb"),
    (
        "worker PSS MB, sum of processes (peak; a shared page counted once)",
        "worker_pss_total_peak_mb",
    ),
    ("worker RSS MB, main process (peak)", "worker_rss_main_peak_mb"),
    ("worker RSS MB, largest pool process (peak)", "worker_rss_pool_process_peak_mb"),
    ("pool processes seen (replaced: memory limit, task count)", "worker_pool_processes_seen"),
    ("worker CPU, % of all cores", "worker_cpu_percent_of_machine"),
    ("busiest worker process's CPU, % of one core", "worker_cpu_busiest_process_percent_of_core"),
    ("machine CPU busy % (everything, others' load too)", "machine_cpu_percent"),
    ("load average (1 min) at start / end", "load"),
    ("delivered exactly once", "delivered_once"),
    ("delivered more than once", "delivered_more_than_once"),
    ("never delivered", "never_delivered"),
    ("webhook requests / 503s served", "webhook"),
    ("writer calls (failed)", "writer"),
    ("ledger states", "states"),
)


def latest_by_latency(runs: Sequence[RunResult]) -> dict[float, RunResult]:
    """Writer latency (s) -> the latest E run at it, sorted by latency."""
    latest = {float(run.extra["writer_latency_s"]): run for run in runs if run.scenario == "E"}
    return dict(sorted(latest.items()))


def _cell(run: RunResult, key: str) -> Any:
    extra = run.extra
    combined = {
        "load": f"{extra.get('load_average_1m_start')} / {extra.get('load_average_1m_end')}",
        "webhook": f"{extra.get('webhook_requests')} / {extra.get('webhook_unavailable')}",
        "writer": f"{extra.get('writer_calls')} ({extra.get('writer_calls_failed')})",
        "states": ", ".join(f"{k} {v}" for k, v in sorted(extra.get("states", {}).items())),
    }
    if key in combined:
        return combined[key]
    return getattr(run, key) if hasattr(run, key) else extra.get(key)


def _figures(latest: dict[float, RunResult]) -> list[str]:
    header = ["", *[f"writer {latency:g} s" for latency in latest]]
    rows = [[label, *[_cell(run, key) for run in latest.values()]] for label, key in _ROWS]
    return table(header, rows)


def _verdict(ok: bool) -> str:
    return "yes" if ok else "**no**"


def _targets(latest: dict[float, RunResult]) -> list[str]:
    return table(["target (issue 15)", "measured", "met?"], e_target_rows(latest))


def e_target_rows(latest: dict[float, RunResult]) -> list[list[Any]]:
    """Issue 15's E targets as (target, measured, met?) rows; "not run" when missing."""
    rows: list[list[Any]] = []
    for latency, target in ORDERS_PER_S_TARGETS.items():
        run = latest.get(latency)
        rows.append([f"E at {latency:g} s: ≥ {target:g} orders/s", _rate(run), _met(run, target)])
    rss_run = latest.get(RSS_TARGET_LATENCY_S)
    rows.append(
        [
            f"E at {RSS_TARGET_LATENCY_S:g} s: total worker RSS ≤ {RSS_TARGET_MB:,.0f} MB",
            fmt(rss_run.worker_rss_mb) if rss_run else "not run",
            _verdict(rss_run.worker_rss_mb <= RSS_TARGET_MB) if rss_run else "—",
        ]
    )
    for latency in sorted({*ORDERS_PER_S_TARGETS, *latest}):
        label = f"E at {latency:g} s: peak writer calls in flight = the global cap, never above"
        run = latest.get(latency)
        if run is None:
            rows.append([label, "not run", "—"])
            continue
        peak, cap = run.extra["writer_in_flight_peak"], run.extra["cap_global"]
        rows.append(
            [
                f"{label} ({cap})",
                peak,
                f"reached: {_verdict(peak == cap)}; above: {'**yes**' if peak > cap else 'no'}",
            ]
        )
    return rows


def _rate(run: RunResult | None) -> str:
    """The run's orders/s, with what strict priority order allows beside it when recorded."""
    if run is None:
        return "not run"
    reference = run.extra.get("strict_priority_reference_orders_per_s")
    if reference is None:
        return fmt(run.items_per_s)
    return f"{fmt(run.items_per_s)} (strict priority, no overhead: {fmt(reference)})"


def _met(run: RunResult | None, target: float) -> str:
    return _verdict(run.items_per_s >= target) if run else "—"


def _io_worker(extra: dict[str, Any]) -> str:
    """The threads workers beside the processes, for runs that had them."""
    threads = int(extra.get("worker_io_threads") or 0)
    # Runs recorded before the count was kept had one.
    processes = int(extra.get("worker_io_processes") or 1)
    if not threads:
        return ""
    workers = "a threads worker" if processes == 1 else f"{processes} threads workers"
    return f" + {workers} running {threads} writing/delivery chunks at once each"


def _how(latest: dict[float, RunResult]) -> list[str]:
    lines = []
    for latency, run in latest.items():
        extra = run.extra
        lines += [
            f"- **writer {latency:g} s**: `{extra.get('command')}` "
            f"({extra.get('date')}, commit {extra.get('commit')}); workers: "
            f"{extra.get('worker_command')}, concurrency {extra.get('worker_concurrency')} "
            f"(prefork){_io_worker(extra)}; caps {extra.get('cap_global')} global / "
            f"{extra.get('cap_per_customer')} per customer / "
            f"{extra.get('cap_per_publisher')} per publisher; writing chunks of "
            f"{extra.get('writer_chunk')}; `BATCH_RATE_LIMITS={extra.get('rate_limits')}`; "
            f"writer ±{100 * float(extra.get('writer_jitter', 0)):.0f} %, webhook "
            f"{1000 * float(extra.get('webhook_latency_s', 0)):.0f} ms with "
            f"{100 * float(extra.get('webhook_unavailable_rate', 0)):g} % 503; "
            f"other settings {extra.get('settings') or 'none'}"
        ]
    return lines


def section(runs: Sequence[RunResult], chart_link: str | None) -> list[str]:
    """The Markdown section for the latest E run at each writer latency (none: no section)."""
    latest = latest_by_latency(runs)
    if not latest:
        return []
    chart = [f"![Writer calls in flight over time]({chart_link})", ""] if chart_link else []
    return [
        "## E: real latency (writer and publisher over HTTP)",
        "",
        *chart,
        *_figures(latest),
        "",
        *_targets(latest),
        "",
        "How each run was made:",
        "",
        *_how(latest),
        "",
    ]


def render_chart(runs: Sequence[RunResult], chart_path: Path) -> bool:
    """Draw writer calls in flight over time, one panel per latency; False if no E run."""
    latest = latest_by_latency(runs)
    if not latest:
        return False
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    figure, panels = plt.subplots(len(latest), 1, figsize=(8, 2.6 * len(latest)), squeeze=False)
    for axes, (latency, run) in zip(panels[:, 0], latest.items(), strict=True):
        _panel(axes, latency, run)
    panels[-1, 0].set_xlabel("seconds since submission started")
    figure.tight_layout()
    chart_path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(chart_path, dpi=120)
    plt.close(figure)
    return True


def _panel(axes: Any, latency: float, run: RunResult) -> None:
    extra = run.extra
    writer = extra["writer_in_flight_series"]
    xs = [index * writer["bin_s"] for index in range(len(writer["values"]))]
    axes.step(xs, writer["values"], where="post", label="writer calls in flight (mock's log)")
    slots = extra.get("global_slots_series", [])
    if slots:
        times, writing, delivery = zip(*slots, strict=True)
        totals = [w + d for w, d in zip(writing, delivery, strict=True)]
        axes.plot(times, totals, linewidth=0.8, alpha=0.7, label="global slots held (Redis)")
    axes.axhline(extra["cap_global"], color="red", linestyle="--", linewidth=1, label="global cap")
    axes.set_ylim(bottom=0, top=extra["cap_global"] * 1.15)
    axes.set_ylabel("in flight")
    axes.set_title(
        f"E, writer {latency:g} s, {run.orders:,} orders: {run.items_per_s:.2f} orders/s"
    )
    axes.grid(True, alpha=0.3)
    axes.legend(loc="upper right", fontsize=7)
