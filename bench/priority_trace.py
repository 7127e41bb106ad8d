"""Where a high order's time goes: the priority scenario with each wait split by stage.

Runs one deployment of :mod:`bench.priority` (idle, then behind the low backlog)
in a fresh session and reads, from the ledger, every high order's item spans
(``stage_outputs.started_at``/``finished_at``): the wait before preflight, each
stage's run, and the gaps between stages (commit, feed, queue, a free process or
thread, the claim). Prints one JSON line: the usual waits and, per phase, the p50
and p95 in ms over the idle and the loaded high orders::

    python -m bench.priority_trace --label before default
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bench.measure import percentile
from bench.priority import measure_deployment
from bench.services import bench_services
from ledger.db import transaction

#: Each high order's stage spans, relative to its batch's submission (seconds).
_SPANS = text(
    """
    SELECT i.id, o.stage,
           extract(epoch FROM min(o.started_at) - b.created_at),
           extract(epoch FROM max(o.finished_at) - b.created_at)
    FROM items i JOIN batches b ON b.id = i.batch_id
    JOIN stage_outputs o ON o.item_id = i.id
    WHERE i.batch_id LIKE :pattern
    GROUP BY i.id, o.stage, b.created_at
    """
)
_ORDER = ("preflight", "writing", "qc", "delivery")


def _phases(spans: dict[str, tuple[float, float]]) -> dict[str, float]:
    """One order's phases (ms): ``wait:<stage>`` before each stage, ``run:<stage>`` in it."""
    phases: dict[str, float] = {}
    previous_end = 0.0
    for stage in _ORDER:
        if stage not in spans:
            continue
        start, end = spans[stage]
        phases[f"wait:{stage}"] = (start - previous_end) * 1000
        phases[f"run:{stage}"] = (end - start) * 1000
        previous_end = end
    return phases


def stage_breakdown(pattern: str) -> dict[str, dict[str, float]]:
    """p50/p95 (ms) of each phase over the items of the batches whose id matches ``pattern``."""
    with transaction() as session:
        rows = session.execute(_SPANS, {"pattern": pattern}).all()
    orders: dict[int, dict[str, tuple[float, float]]] = {}
    for item_id, stage, start, end in rows:
        orders.setdefault(item_id, {})[stage] = (float(start), float(end))
    values: dict[str, list[float]] = {}
    for spans in orders.values():
        for phase, ms in _phases(spans).items():
            values.setdefault(phase, []).append(ms)
    return {
        phase: {"p50": round(percentile(v, 50)), "p95": round(percentile(v, 95))}
        for phase, v in values.items()
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Measure one deployment with INFO worker logs; print its waits and phases."""
    parser = argparse.ArgumentParser(prog="python -m bench.priority_trace", description=__doc__)
    parser.add_argument("deployment", nargs="?", default="default")
    parser.add_argument("--label", default="run")
    parser.add_argument("--work-dir", type=Path, default=Path("var/bench/priority-trace"))
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the workers")
    args = parser.parse_args(argv)
    env = dict(pair.split("=", 1) for pair in args.env)
    with bench_services(args.work_dir.resolve()) as bench:
        rows: dict[str, Any] = measure_deployment(
            bench, args.deployment, {"LOG_LEVEL": "INFO", **env}
        )
        for when in ("idle", "loaded"):
            rows[f"phases, {when}"] = stage_breakdown(f"prio-{args.deployment}-{when}%")
        print(json.dumps({"label": args.label, "logs": str(bench.log_dir), **rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
