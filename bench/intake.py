"""Single-order intake against ``submit_batch`` of the same orders, in one run.

``python -m bench.intake --orders 500 --rounds 3`` starts (or reuses) the servers as
``make bench`` does and, round by round, makes one batch of ``--orders`` orders both
ways: one ``submit_batch`` call, and ``OrderIntake.submit`` once per order (each
committed before it returns) with ``max_orders`` set so the last accept flushes the
group as one batch. The rounds alternate, so machine load falls on both alike; the
figure to read is the ratio of the medians. No workers run: only intake is timed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.services import bench_services


def _python_submit(documents: list[dict[str, Any]], batch_id: str) -> float:
    from tasks.submit import submit_batch

    started = time.perf_counter()
    submit_batch(documents, "bench-intake", "normal", {"batch_id": batch_id})
    return time.perf_counter() - started


def _intake_submit(documents: list[dict[str, Any]], project: str) -> float:
    from tasks.intake import OrderIntake

    intake = OrderIntake(max_orders=len(documents), max_wait_seconds=3600, background=False)
    started = time.perf_counter()
    for document in documents:
        record = intake.submit(document, project, "normal")
    elapsed = time.perf_counter() - started
    if record["state"] != "flushed":
        raise RuntimeError(f"the last accept did not flush the group: {record}")
    return elapsed


def measure(orders: int, rounds: int, work_dir: Path) -> dict[str, Any]:
    """Time ``rounds`` batches of ``orders`` orders each way; return the figures."""
    from cli.sample_orders import sample_orders

    batch_s: list[float] = []
    intake_s: list[float] = []
    with bench_services(work_dir):
        stamp = time.time_ns()
        for n in range(rounds):
            documents = sample_orders(orders, tag=f"bi{stamp}-{n}")
            batch_s.append(_python_submit(documents, f"bench-batch-{stamp}-{n}"))
            documents = sample_orders(orders, tag=f"si{stamp}-{n}")
            intake_s.append(_intake_submit(documents, f"bench-intake-{stamp}-{n}"))
    batch_median, intake_median = statistics.median(batch_s), statistics.median(intake_s)
    return {
        "orders": orders,
        "rounds": rounds,
        "submit_batch_seconds": [round(s, 3) for s in batch_s],
        "intake_seconds": [round(s, 3) for s in intake_s],
        "intake_ms_per_order": round(intake_median / orders * 1000, 2),
        "ratio_intake_to_submit_batch": round(intake_median / batch_median, 1),
    }


def main() -> None:
    """Print the figures as one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-intake-") as work:
        print(json.dumps(measure(args.orders, args.rounds, Path(work)), indent=2))


if __name__ == "__main__":
    main()
