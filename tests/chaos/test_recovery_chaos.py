"""kill -9 mid-delivery during a recovery: every order is still published once in its lineage.

A batch against a real webhook publisher that fails every other request ends
PARTIAL; its recovery's first publish is held by the publisher while the test
SIGKILLs the worker's pool process that sent it, so the receipt never reaches the
ledger. The message comes back, the delivery runs again with the lineage's key,
and the publisher answers with the first publish. Both batches call their
``on_complete`` task exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from cli.workers import ALL_LANES, spawn_beat, spawn_worker, stop_workers
from ledger.db import transaction
from ledger.models import Event
from tests.integration.helpers import (
    assert_each_delivered_once,
    item_states,
    register_webhook_publisher,
    wait_for_final,
    webhook_orders,
)
from tests.support_processes import child_pids
from tests.support_publisher_server import PublisherServer

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]

CHAOS_RECOVERY_REDIS_DB = 11
DOMAIN = "chaos-recovery.example"
CALLBACK = "batchline.maintenance.log_completion"

_CALL = """
import json, sys
from tasks import submit_batch
from recovery.recover import recover_failed_batch
name, args = json.load(open(sys.argv[1]))
fn = submit_batch if name == "submit" else recover_failed_batch
print(json.dumps(fn(*args)))
"""


def _call(env: dict[str, str], tmp: Path, name: str, *args: Any) -> dict[str, Any]:
    payload = tmp / f"{name}-{uuid.uuid4().hex}.json"
    payload.write_text(json.dumps([name, list(args)]))
    done = subprocess.run(
        [sys.executable, "-c", _CALL, str(payload)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def _callbacks(batch_id: str) -> int:
    with transaction() as session:
        query = select(func.count()).where(
            Event.batch_id == batch_id, Event.kind == "on_complete_called"
        )
        return int(session.scalar(query) or 0)


def _first_published(server: PublisherServer, order_ids: list[str], before: dict[str, int]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(server.requests(order_id) > before[order_id] for order_id in order_ids):
            return
        time.sleep(0.01)
    raise TimeoutError("the recovery never reached the publisher")


def test_sigkill_mid_delivery_of_a_recovery_publishes_each_order_once(
    service_env: dict[str, str],
    tmp_path: Path,
    isolated_redis: Callable[[int], str],
    chaos_report: dict[str, Any],
) -> None:
    env = {
        **service_env,
        "REDIS_URL": isolated_redis(CHAOS_RECOVERY_REDIS_DB),
        "DELIVERY_BACKEND": "webhook",
    }
    with PublisherServer() as server:
        register_webhook_publisher(DOMAIN, server.url)
        worker = spawn_worker(
            ALL_LANES, concurrency=1, name="chaosrec", env=env, log_path=tmp_path / "worker.log"
        )
        beat = spawn_beat(
            env=env, log_path=tmp_path / "beat.log", schedule_path=tmp_path / "schedule"
        )
        try:
            # Given a PARTIAL batch: the endpoint failed every other request, one retry each
            tag = f"chaosrec-{uuid.uuid4().hex[:6]}"
            orders = webhook_orders(tag, 8, DOMAIN)
            ids = [str(o["order_id"]) for o in orders]
            server.fail_every_other(40)
            options = {"batch_id": tag, "max_retries": 1, "on_complete": CALLBACK}
            _call(env, tmp_path, "submit", orders, "tests", "high", options)
            assert wait_for_final([tag], timeout=60) == {tag: "PARTIAL"}
            failed = sorted(o for o, s in item_states(tag).items() if s == "FAILED")

            # When its recovery's first publish is held and the worker process is killed
            with server._state.lock:  # the endpoint is healthy again
                server._state.failures.clear()
            server.hold(30, count=1)
            before = {order_id: server.requests(order_id) for order_id in ids}
            recovery = _call(env, tmp_path, "recover", tag, None)["recovery_batch_id"]
            _first_published(server, failed, before)
            victims = child_pids(worker.pid)
            killed_at = time.monotonic()
            for child in victims:
                os.kill(child, signal.SIGKILL)

            # Then the recovery completes and every order is published once in all
            assert wait_for_final([recovery], timeout=90) == {recovery: "COMPLETED"}
            recovered_in = round(time.monotonic() - killed_at, 2)
            assert all(server.effective_publishes(order_id) == 1 for order_id in ids)
            # The held order was asked again (its answer was lost); the others of the
            # chunk found their remembered receipts and were not asked again.
            asked = sorted(server.requests(order_id) - before[order_id] for order_id in failed)
            assert asked == [1] * (len(failed) - 1) + [2]
            assert_each_delivered_once(recovery)
            # ... and each batch's on_complete ran exactly once
            for batch_id in (tag, recovery):
                deadline = time.monotonic() + 20
                while _callbacks(batch_id) < 1 and time.monotonic() < deadline:
                    time.sleep(0.2)
            time.sleep(2)  # sweeps run every second: none may send it again
            assert (_callbacks(tag), _callbacks(recovery)) == (1, 1)
        finally:
            stop_workers([worker, beat])
    chaos_report["recovery_sigkill"] = {
        "orders": len(orders),
        "recovered": len(failed),
        "killed_processes": len(victims),
        "seconds_to_complete_after_kill": recovered_in,
        "effective_publishes": sum(server.effective_publishes(o) for o in ids),
        "duplicated_publishes": sum(max(0, server.effective_publishes(o) - 1) for o in ids),
    }
