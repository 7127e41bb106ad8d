"""Before/after runs of the priority scenario, one deployment at a time, for A/B notes.

Run it from a checkout of each commit (``git archive <commit> | tar -x -C DIR``,
with the venv linked in), alternating, so both see the same machine load::

    python -m bench.priority_ab --label before1 default
    python -m bench.priority_ab --label after1 default

Each deployment is :func:`bench.priority.measure_deployment` (what
``python -m bench.run --scenarios priority`` runs per row), in a fresh session of
servers. ``io-high`` is a candidate evaluated in the notes: the I/O threads worker
also polls ``batch.high`` (the high lane's CPU-bound stages).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

from bench.priority import DEPLOYMENTS, measure_deployment
from bench.services import bench_services
from cli.workers import ALL_LANES, worker_command
from pipeline.settings import get_settings


def _io_high() -> tuple[list[list[str]], int]:
    settings = get_settings()
    io = worker_command(ALL_LANES, settings.batch_io_worker_threads, "prio-iohigh-io", kind="io")
    queues = io.index("-Q") + 1
    io[queues] = f"batch.high,{io[queues]}"
    cpu = worker_command(ALL_LANES, settings.batch_worker_concurrency, "prio-iohigh", kind="cpu")
    return [cpu, io], 2


def main(argv: Sequence[str] | None = None) -> int:
    """Measure each named deployment; print one JSON line per deployment."""
    parser = argparse.ArgumentParser(prog="python -m bench.priority_ab", description=__doc__)
    parser.add_argument("deployments", nargs="+", help="default, dedicated or io-high")
    parser.add_argument("--label", default="run")
    parser.add_argument("--work-dir", type=Path, default=Path("var/bench/priority-ab"))
    args = parser.parse_args(argv)
    DEPLOYMENTS.setdefault("io-high", _io_high())
    with bench_services(args.work_dir.resolve()) as bench:
        for name in args.deployments:
            started = time.monotonic()
            rows = measure_deployment(bench, name)
            seconds = round(time.monotonic() - started)
            print(json.dumps({"label": args.label, "deployment": name, "s": seconds, **rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
