"""``make bench``: run the scenarios, record every run, render docs/BENCHMARKS.md.

``python -m bench.run --sizes 1000,10000 --scenarios A,B`` runs a subset;
``--render-only`` redraws the document from an existing results file.
``python -m bench.run --scenarios E --e-runs 2:2000,10:500 --append`` runs the
real-latency scenario and adds its runs to those already in ``--out``.
"""

from __future__ import annotations

import argparse
import importlib.util
import shlex
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.realistic_config import DEFAULT_RUNS, RealisticOptions, parse_env, parse_runs
from bench.registry import resolve
from bench.repeats import DEFAULT_REPEATS, REPEATS_KEY, SHORT_RUN_S, repeated_if_short
from bench.results import Results, RunResult

#: Scenarios run once per size: ``fn(bench: BenchEnv, orders: int) -> RunResult``.
SIZE_SCENARIOS: dict[str, str] = {
    "A": "bench.baseline:run_chain",
    "B": "bench.baseline:run_single",
    "C": "bench.batchline:run_noop",
    "D": "bench.batchline:run_real",
}
#: Scenarios run once: ``fn(bench: BenchEnv) -> RunResult``.
ONE_OFF_SCENARIOS: dict[str, str] = {
    "priority": "bench.batchline:run_priority",
    "fairness": "bench.batchline:run_fairness",
}
#: Scenarios run once per ``--e-runs`` entry: ``fn(bench, RealisticRun, RealisticOptions)``.
LATENCY_SCENARIOS: dict[str, str] = {
    "E": "bench.realistic:run_realistic",
}
_ALL = {**SIZE_SCENARIOS, **ONE_OFF_SCENARIOS, **LATENCY_SCENARIOS}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument(
        "--sizes", default="1000,10000,100000", help="orders per run, comma-separated"
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(_ALL),
        help="comma-separated, among " + ", ".join(_ALL),
    )
    # Beside the page it renders, in git: a fresh clone can redraw it (--render-only),
    # and a later session can --append to the runs behind it.
    parser.add_argument("--out", type=Path, default=Path("docs/bench-results.json"))
    parser.add_argument("--doc", type=Path, default=Path("docs/BENCHMARKS.md"))
    parser.add_argument("--chart", type=Path, default=Path("docs/bench-throughput.png"))
    parser.add_argument("--work-dir", type=Path, default=Path("var/bench/work"))
    parser.add_argument(
        "--render-only", action="store_true", help="only redraw --doc and --chart from --out"
    )
    parser.add_argument(
        "--max-orders",
        action="append",
        default=[],
        metavar="SCENARIO=N",
        help="run SCENARIO only up to N orders (e.g. D=10000: D at 100,000 takes ~40 min)",
    )
    parser.add_argument(
        "--short-repeats",
        type=int,
        default=DEFAULT_REPEATS,
        metavar="N",
        help=f"run A-D runs shorter than {SHORT_RUN_S:g} s N times in all and keep the median",
    )
    _realistic_options(parser)
    return parser


def _realistic_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("scenario E (real latency)")
    group.add_argument(
        "--e-runs",
        default=DEFAULT_RUNS,
        metavar="LATENCY_S:ORDERS,...",
        help=f"writer latency (s) and orders per E run (default {DEFAULT_RUNS})",
    )
    group.add_argument(
        "--e-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for E's workers, e.g. BATCH_CAP_GLOBAL=8 (repeatable)",
    )
    group.add_argument(
        "--e-webhook-ms", type=int, default=200, help="the publisher's answer time (ms)"
    )
    group.add_argument(
        "--e-unavailable",
        type=float,
        default=0.02,
        help="share of first webhook requests answered 503 + Retry-After",
    )
    parser.add_argument(
        "--append", action="store_true", help="keep the runs already in --out and add these"
    )


def _parse_list(parser: argparse.ArgumentParser, value: str) -> list[str]:
    items = [item.strip() for item in value.split(",") if item.strip()]
    if not items:
        parser.error(f"empty list: {value!r}")
    return items


def _sizes(parser: argparse.ArgumentParser, value: str) -> list[int]:
    try:
        sizes = [int(item.replace("_", "")) for item in _parse_list(parser, value)]
    except ValueError:
        parser.error(f"--sizes takes whole numbers: {value!r}")
    if any(size < 1 for size in sizes):
        parser.error("--sizes must be positive")
    return sizes


def _scenarios(parser: argparse.ArgumentParser, value: str) -> list[str]:
    scenarios = _parse_list(parser, value)
    unknown = [s for s in scenarios if s not in _ALL]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    return scenarios


def _check_modules(parser: argparse.ArgumentParser, scenarios: list[str]) -> None:
    """Fail now, not after an hour of other scenarios, if a selected module is missing.

    Only located, not imported: bench.naive must not read REDIS_URL before
    bench_services sets it.
    """
    for name in scenarios:
        module = _ALL[name].partition(":")[0]
        if importlib.util.find_spec(module) is None:
            parser.error(f"scenario {name} needs module {module}, which does not exist yet")


def _describe(run: RunResult) -> str:
    if run.scenario in LATENCY_SCENARIOS:
        extra = run.extra
        return (
            f"{run.scenario:>8} {run.orders:>8,} orders at {extra['writer_latency_s']:g} s: "
            f"{run.items_per_s:.2f} orders/s ({run.seconds:.0f} s), writer calls in flight "
            f"peak {extra['writer_in_flight_peak']} mean {extra['writer_in_flight_mean']:.1f}, "
            f"workers {run.worker_rss_mb:.0f} MB, "
            f"delivered once {extra['delivered_once']}/{run.orders}"
        )
    rates = run.extra.get(REPEATS_KEY)
    median = f", the median of {rates}" if rates else ""
    return (
        f"{run.scenario:>8} {run.orders:>8,} orders: {run.items_per_s:>9,.0f} items/s{median} "
        f"({run.seconds:.2f} s), submit {run.submit_seconds:.2f} s, "
        f"submitter {run.submitter_rss_mb:.0f} MB, workers {run.worker_rss_mb:.0f} MB, "
        f"Redis {run.redis_bytes_per_order:,.0f} B/order"
    )


def _record(
    results: Results,
    out: Path,
    scenario: str,
    orders: int | None,
    call: Callable[..., RunResult],
    *args: Any,
) -> None:
    """Run ``call(*args)``; save its result, or note its failure and carry on with the rest."""
    started = time.monotonic()
    try:
        run = call(*args)
    except Exception as error:  # one broken scenario must not lose the others' figures
        traceback.print_exc()
        failure = {
            "scenario": scenario,
            "orders": orders,
            "error": f"{type(error).__name__}: {error}",
        }
        results.meta.setdefault("failures", []).append(failure)
        print(
            f"{scenario:>8} {orders or '':>8} FAILED after {time.monotonic() - started:.0f} s",
            flush=True,
        )
    else:
        results.runs.append(run)
        print(_describe(run), flush=True)
    results.save(out)


def _limits(parser: argparse.ArgumentParser, values: list[str]) -> dict[str, int]:
    limits = {}
    for value in values:
        name, _, number = value.partition("=")
        if name not in SIZE_SCENARIOS or not number.isdigit():
            parser.error(f"--max-orders takes SCENARIO=N with SCENARIO among A-D: {value!r}")
        limits[name] = int(number)
    return limits


def _stamped(call: Callable[..., RunResult], meta: dict[str, Any]) -> Callable[..., RunResult]:
    """``call`` whose result also records this invocation's command and date.

    An E run may be appended to a results file recorded by another command
    (``--append``), so its section must name its own.
    """

    def stamped(*args: Any) -> RunResult:
        run = call(*args)
        commit = meta.get("machine", {}).get("commit")
        stamp = {"command": meta.get("command"), "date": meta.get("date"), "commit": commit}
        run.extra = {**stamp, **run.extra}
        return run

    return stamped


def _run_realistic(
    results: Results, out: Path, bench: Any, realistic: tuple[list[Any], RealisticOptions]
) -> None:
    runs, options = realistic
    for name in LATENCY_SCENARIOS:
        call = _stamped(resolve(LATENCY_SCENARIOS[name]), results.meta["this_run"])
        for run in runs:
            _record(results, out, name, run.orders, call, bench, run, options)


def _run_all(
    results: Results,
    out: Path,
    work_dir: Path,
    sizes: list[int],
    scenarios: list[str],
    limits: dict[str, int],
    realistic: tuple[list[Any], RealisticOptions],
    repeats: int,
) -> None:
    from bench.measure import machine_info
    from bench.services import bench_services

    with bench_services(work_dir.resolve()) as bench:
        # An appended run keeps the machine of the runs it joins; its own goes in this_run.
        results.meta["this_run"]["machine"] = machine_info()
        results.meta.setdefault("machine", results.meta["this_run"]["machine"])
        results.save(out)
        for size in sizes:
            for name in [s for s in SIZE_SCENARIOS if s in scenarios]:
                if size > limits.get(name, size):
                    results.meta.setdefault("skipped", []).append(f"{name} at {size:,} orders")
                    continue
                call = repeated_if_short(resolve(SIZE_SCENARIOS[name]), repeats)
                _record(results, out, name, size, call, bench, size)
        for name in [s for s in ONE_OFF_SCENARIOS if s in scenarios]:
            _record(results, out, name, None, resolve(ONE_OFF_SCENARIOS[name]), bench)
        if any(name in scenarios for name in LATENCY_SCENARIOS):
            _run_realistic(results, out, bench, realistic)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected scenarios (or only re-render); return the exit status.

    Exit status 1 when any scenario failed: the others are still recorded and rendered.
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    args = parser.parse_args(args_list)
    if args.render_only:
        from bench.report import render

        render(args.out, args.doc, args.chart)
        print(f"rendered {args.doc} and {args.chart} from {args.out}")
        return 0
    sizes, scenarios = _sizes(parser, args.sizes), _scenarios(parser, args.scenarios)
    limits = _limits(parser, args.max_orders)
    if args.short_repeats < 1:
        parser.error("--short-repeats must be at least 1")
    _check_modules(parser, scenarios)
    try:
        realistic = (parse_runs(args.e_runs), _options(args))
    except ValueError as error:
        parser.error(str(error))
    this_run = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": shlex.join(["python", "-m", "bench.run", *args_list]),
    }
    results = _results(args.out, args.append, this_run, sizes, scenarios)
    failed_before = len(results.meta.get("failures", []))
    _run_all(
        results, args.out, args.work_dir, sizes, scenarios, limits, realistic, args.short_repeats
    )
    from bench.report import render

    render(args.out, args.doc, args.chart)
    print(f"results in {args.out}; wrote {args.doc} and {args.chart}", flush=True)
    return 1 if len(results.meta.get("failures", [])) > failed_before else 0


def _options(args: argparse.Namespace) -> RealisticOptions:
    return RealisticOptions(
        webhook_latency_s=args.e_webhook_ms / 1000,
        unavailable_rate=args.e_unavailable,
        env=parse_env(args.e_env),
    )


def _results(
    out: Path, append: bool, this_run: dict[str, Any], sizes: list[int], scenarios: list[str]
) -> Results:
    """A fresh results file, or with ``append`` the one at ``out`` noting this run."""
    if append and out.exists():
        results = Results.load(out)
        results.meta.setdefault("appended", []).append(this_run)
    else:
        results = Results(meta={**this_run, "sizes": sizes, "scenarios": scenarios})
    results.meta["this_run"] = this_run
    return results


if __name__ == "__main__":
    sys.exit(main())
