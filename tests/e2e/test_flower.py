"""Flower as an operator starts it: ``batchline flower`` behind basic auth, showing batches.

A worker and Flower run on a Redis database of this module's own, so Flower sees
exactly this test's tasks. The screenshot of Flower's task list is taken with
Debian's headless Chromium (``tests/support_browser.py`` installs it when missing).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli.children import die_with_parent
from cli.embedded import free_port
from cli.workers import WORK_LANES, spawn_worker, stop_workers
from tests.integration.helpers import make_orders, submit_in_child, wait_for_final, wait_until
from tests.support_browser import CHROMIUM_FLAGS

pytestmark = pytest.mark.e2e

#: Redis database of this module's worker and Flower (see ``isolated_redis``).
FLOWER_REDIS_DB = 2
USER, PASSWORD = "ops", "flower-test-password"
#: Stages that run chunks of their own: QC runs inside the writing chunks (fused,
#: ``BATCH_FUSE_STAGES``), whose Flower result carries QC's part.
STAGES = ("preflight", "writing", "delivery")


@pytest.fixture()
def flower_env(service_env: dict[str, str], isolated_redis: Callable[[int], str]) -> dict[str, str]:
    """The session's servers with a Redis database of this module's own, and credentials."""
    return {
        **service_env,
        "REDIS_URL": isolated_redis(FLOWER_REDIS_DB),
        "FLOWER_BASIC_AUTH": f"{USER}:{PASSWORD}",
    }


@pytest.fixture()
def flower(flower_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """``batchline flower`` on a free port, answering; yields its base URL."""
    port = free_port()
    with (tmp_path / "flower.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli", "flower", "--port", str(port)],
            env={**os.environ, **flower_env},
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent(),
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(base, process), timeout=90, interval=0.5)
        yield base
    finally:
        stop_workers([process])


def _answers(base: str, process: subprocess.Popen[bytes]) -> bool:
    assert process.poll() is None, f"Flower exited with code {process.returncode}"
    try:
        return httpx.get(f"{base}/healthcheck", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _api(base: str, path: str, **params: Any) -> Any:
    response = httpx.get(f"{base}{path}", params=params, auth=(USER, PASSWORD), timeout=30)
    response.raise_for_status()
    return response.json()


def _worker_seen(base: str) -> bool:
    """Whether Flower's inspect reaches a worker (it may time out while one starts)."""
    try:
        return bool(_api(base, "/api/workers", refresh=1))
    except httpx.HTTPError:
        return False


def _chunks_of(base: str, batch_id: str) -> dict[str, dict[str, Any]]:
    """Flower's stage tasks of a batch, found by their kwargs (``kwargs:batch_id=``)."""
    found = _api(base, "/api/tasks", search=f"kwargs:batch_id={batch_id}")
    return {
        task_id: task
        for task_id, task in found.items()
        if task["name"] != "batchline.start_batch"  # the batch's handle, no chunk
    }


def _all_stages_succeeded(base: str, batch_id: str) -> bool:
    chunks = _chunks_of(base, batch_id).values()
    done = {c["name"] for c in chunks if c.get("state") == "SUCCESS"}
    return done >= {f"batchline.stage.{stage}" for stage in STAGES}


def test_flower_needs_credentials_and_shows_chunks_by_batch_with_failures_findable(
    flower: str, flower_env: dict[str, str], tmp_path: Path, chromium: str
) -> None:
    # Given Flower started with `batchline flower`, and a worker it sees
    worker = spawn_worker(
        ("maintenance", *WORK_LANES),
        concurrency=1,
        name="flowered",
        env=flower_env,
        log_path=tmp_path / "worker.log",
    )
    try:
        # Without credentials nothing answers, the page or the API
        assert httpx.get(f"{flower}/", timeout=10).status_code == 401
        assert httpx.get(f"{flower}/api/tasks", timeout=10).status_code == 401
        wait_until(lambda: _worker_seen(flower), timeout=120, interval=1)

        # When a batch with one order that fails preflight runs
        batch_id = f"flower-{uuid.uuid4().hex[:8]}"
        orders = make_orders(3, batch_id)
        failing = orders[0]
        orders[0] = {**failing, "target_url": f"https://{failing['publisher_domain']}/self"}
        batch = {"id": batch_id, "priority": "high", "orders": orders}
        submit_in_child([batch], flower_env, tmp_path)
        assert wait_for_final([batch_id], timeout=180)[batch_id] == "PARTIAL"
        wait_until(lambda: _all_stages_succeeded(flower, batch_id), timeout=60, interval=1)

        # Then Flower lists the batch's stage tasks, each showing batch, stage and size
        chunks = _chunks_of(flower, batch_id)
        assert set(chunks) <= set(_api(flower, "/api/tasks"))  # the plain list has them too
        for chunk in chunks.values():
            assert chunk["name"].startswith("batchline.stage.")
            shown = ast.literal_eval(chunk["kwargs"])
            assert shown["batch_id"] == batch_id
            assert chunk["name"] == f"batchline.stage.{shown['stage']}"
            assert shown["lane"] == "high" and shown["items"] >= 1
        # and the chunk whose order failed is found by its result, naming the order
        failing_ids = set(_api(flower, "/api/tasks", search="result:items_failed"))
        of_batch = f"kwargs:batch_id={batch_id} AND result:items_failed"
        assert set(_api(flower, "/api/tasks", search=of_batch)) == failing_ids
        failed = [chunk for task_id, chunk in chunks.items() if task_id in failing_ids]
        assert [chunk["name"] for chunk in failed] == ["batchline.stage.preflight"]
        result = ast.literal_eval(failed[0]["result"])
        assert result["failed_orders"] == [
            {"order_id": failing["order_id"], "class": "InvalidInput", "code": "target_domain"}
        ]
        assert all(
            "ITEMS_FAILED" not in chunk["result"]
            for chunk in chunks.values()
            if chunk not in failed
        )
        # and QC's verdicts show in the writing chunks' results, where QC ran
        writing = [c for c in chunks.values() if c["name"] == "batchline.stage.writing"]
        fused = [ast.literal_eval(c["result"]).get("fused") for c in writing]
        assert sum(part["ok"] for part in fused if part and part["stage"] == "qc") == 2

        # and the task list renders in a browser with the credentials: rows of the batch
        page = _chromium(chromium, flower, tmp_path, "--dump-dom").stdout
        assert batch_id in page and "ITEMS_FAILED" in page
        screenshot = tmp_path / "flower-tasks.png"
        _chromium(chromium, flower, tmp_path, f"--screenshot={screenshot}")
        assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        stop_workers([worker])


def _chromium(
    chromium: str, base: str, tmp_path: Path, output: str
) -> subprocess.CompletedProcess[str]:
    """Flower's task list in headless Chromium (``--dump-dom`` or ``--screenshot=``).

    The credentials travel in the URL: Chromium answers the basic-auth challenge
    with them, for the page and for the task table it loads afterwards.
    """
    url = base.replace("http://", f"http://{USER}:{PASSWORD}@") + "/tasks"
    command = [
        chromium,
        *CHROMIUM_FLAGS,
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1400,900",
        # Virtual time lets the page's own requests (the task table) finish first.
        "--virtual-time-budget=15000",
        output,
        url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done
