"""Submitting over HTTP against ``submit_batch`` in the caller's process, same orders.

``python -m bench.http_submit --orders 10000 --rounds 3`` starts (or reuses) the
servers as ``make bench`` does, runs ``batchline api`` as a child process, and then,
round by round, submits a fresh batch of the same size both ways: ``submit_batch(...)``
called here, and ``POST /v1/batches`` with the JSON body (its encoding counted). The
rounds alternate, so machine load falls on both alike; the figure to read is the
ratio of the medians, measured in one run. No workers run: only the submit is timed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.services import bench_services


def _python_submit(documents: list[dict[str, Any]], batch_id: str) -> float:
    from tasks.submit import submit_batch

    started = time.perf_counter()
    submit_batch(documents, "bench-http", "normal", {"batch_id": batch_id})
    return time.perf_counter() - started


def _http_submit(client: httpx.Client, documents: list[dict[str, Any]], batch_id: str) -> float:
    started = time.perf_counter()
    body: dict[str, Any] = {"documents": documents, "project_uuid": "bench-http"}
    body.update(priority="normal", options={"batch_id": batch_id})
    response = client.post(
        "/v1/batches", content=json.dumps(body), headers={"content-type": "application/json"}
    )
    elapsed = time.perf_counter() - started
    if response.status_code != 202:
        raise RuntimeError(f"HTTP submit answered {response.status_code}: {response.text[:300]}")
    return elapsed


def measure(orders: int, rounds: int, work_dir: Path) -> dict[str, Any]:
    """Time ``rounds`` submissions of ``orders`` orders each way; return the figures."""
    from api.server import free_port, spawn_api, wait_until_alive
    from cli.sample_orders import sample_orders
    from cli.workers import stop_workers
    from ledger.api_keys import create_key
    from ledger.db import transaction
    from pipeline.api_access import Scope

    python_s: list[float] = []
    http_s: list[float] = []
    with bench_services(work_dir) as bench:
        port = free_port()
        server = spawn_api("127.0.0.1", port, env=bench.env, log_path=bench.log_dir / "api.log")
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until_alive(base, server, 60)
            with transaction() as session:
                token, _ = create_key(session, name="bench", scope=Scope.WRITE)
            headers = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=base, headers=headers, timeout=600) as client:
                for n in range(rounds):
                    python_s.append(
                        _python_submit(sample_orders(orders, tag=f"py{n}"), f"bench-py-{n}")
                    )
                    documents = sample_orders(orders, tag=f"http{n}")
                    http_s.append(_http_submit(client, documents, f"bench-http-{n}"))
        finally:
            stop_workers([server])
    python_median, http_median = statistics.median(python_s), statistics.median(http_s)
    return {
        "orders": orders,
        "rounds": rounds,
        "python_seconds": [round(s, 3) for s in python_s],
        "http_seconds": [round(s, 3) for s in http_s],
        "python_median_s": round(python_median, 3),
        "http_median_s": round(http_median, 3),
        "ratio_http_to_python": round(http_median / python_median, 2),
    }


def main() -> None:
    """Print the figures as one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-http-") as work:
        print(json.dumps(measure(args.orders, args.rounds, Path(work)), indent=2))


if __name__ == "__main__":
    main()
