"""How long a prefork worker's received task waits for a process, with recycling or without.

With late acks and a prefetch of one per process, a worker fetches its next message
when a task ends. If that task was the process's last (``worker_max_tasks_per_child``),
the message arrives while the process is being replaced and waits in the worker until
the replacement is up, out of reach of every other worker: a high-lane chunk fetched
then waits behind the fork, however idle the rest of the fleet is.

This measures that wait on a stripped-down Celery app with the product's delivery
settings (late acks, prefetch 1, rejected on worker loss, JSON): one prefork worker
with 2 processes runs ``--tasks`` short tasks, and each task's wait is the time from
the worker's ``task_received`` signal to the task's first line, both stamped into Redis.
Configurations alternate within one session (``--rounds``), so each ratio is against a
run on the same machine minutes apart::

    python -m bench.recycling --every 50,0 --tasks 400 --rounds 2

``--every 0`` means never replaced by count (Celery's own default).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
from celery import Celery
from celery.signals import task_received

from cli.embedded import EmbeddedValkey

#: Redis hashes of this benchmark (its own embedded server, flushed per run).
RECEIVED_KEY = "bench:recycling:received"
STARTED_KEY = "bench:recycling:started"

app = Celery("bench-recycling")
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    broker_transport_options={"queue_order_strategy": "priority", "visibility_timeout": 3600},
    worker_hijack_root_logger=False,
)


def _client() -> redis.Redis:
    return redis.Redis.from_url(str(app.conf.broker_url), decode_responses=True)


@task_received.connect  # type: ignore[untyped-decorator]  # Celery is untyped
def _stamp_received(request: Any = None, **_: Any) -> None:
    # In the worker's main process: the message has left Redis and is the worker's.
    _client().hset(RECEIVED_KEY, request.id, time.time())


@app.task(name="bench.recycling.work", bind=True)  # type: ignore[untyped-decorator]
def work(self: Any, seconds: float) -> None:
    """Stamp this task's start and its process, then hold the process for ``seconds``."""
    _client().hset(STARTED_KEY, self.request.id, f"{time.time()}:{os.getpid()}")
    time.sleep(seconds)


def _worker(url: str, every: int, log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "celery", "-b", url, "-A", "bench.recycling", "worker"]
    command += ["-P", "prefork", "-c", "2", "-l", "WARNING"]
    command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    if every:
        command += ["--max-tasks-per-child", str(every)]
    with log.open("ab") as output:  # the banner and the worker's lines
        return subprocess.Popen(
            command, cwd=Path(__file__).resolve().parent.parent, stdout=output, stderr=output
        )


def _wait_ready(timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if app.control.ping(timeout=0.5):
            return
    raise TimeoutError("the benchmark worker did not answer a ping")


def measure(url: str, every: int, tasks: int, seconds: float, log: Path) -> dict[str, Any]:
    """Run ``tasks`` tasks on a fresh worker replacing processes every ``every`` (0: never)."""
    client = _client()
    client.flushdb()
    worker = _worker(url, every, log)
    try:
        _wait_ready()
        ids = [work.delay(seconds).id for _ in range(tasks)]
        started = time.monotonic()
        while client.hlen(STARTED_KEY) < tasks and time.monotonic() - started < 600:
            time.sleep(0.1)
        wall = time.monotonic() - started
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    return _summary(client, ids, every, wall)


def _summary(client: redis.Redis, ids: list[str], every: int, wall: float) -> dict[str, Any]:
    received = {k: float(v) for k, v in client.hgetall(RECEIVED_KEY).items()}
    started = {k: str(v).split(":") for k, v in client.hgetall(STARTED_KEY).items()}
    both = [i for i in ids if i in started and i in received]
    waits = sorted(float(started[i][0]) - received[i] for i in both)
    return {
        "every": every,
        "tasks": len(ids),
        "started": len(started),
        "processes": len({pid for _, pid in started.values()}),
        "wall_s": round(wall, 2),
        "wait_p50_ms": round(statistics.median(waits) * 1000, 1),
        "wait_p95_ms": round(waits[int(0.95 * (len(waits) - 1))] * 1000, 1),
        "wait_max_ms": round(waits[-1] * 1000, 1),
        "waits_over_100ms": sum(1 for w in waits if w > 0.1),
    }


@contextmanager
def _server() -> Iterator[str]:
    with EmbeddedValkey() as valkey:
        app.conf.broker_url = valkey.url
        yield valkey.url


def main(argv: Sequence[str] | None = None) -> int:
    """Alternate the configurations ``--rounds`` times; print one JSON line per run."""
    parser = argparse.ArgumentParser(prog="python -m bench.recycling", description=__doc__)
    parser.add_argument("--every", default="50,0", help="comma-separated; 0 = never replaced")
    parser.add_argument("--tasks", type=int, default=400)
    parser.add_argument("--seconds", type=float, default=0.01, help="each task's duration")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    with _server() as url, tempfile.TemporaryDirectory() as scratch:
        for round_ in range(1, args.rounds + 1):
            for every in (int(value) for value in args.every.split(",")):
                log = Path(scratch) / f"worker-{every}-{round_}.log"
                row = measure(url, every, args.tasks, args.seconds, log)
                print(json.dumps({"round": round_, **row}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
