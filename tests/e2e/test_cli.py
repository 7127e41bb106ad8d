"""The ``batchline`` command as a user runs it, against the session's servers."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from celery_app import LANES
from cli.embedded import free_port
from tests.integration.helpers import (
    ledger_counts,
    make_orders,
    wait_for_final,
    wait_until,
)
from tests.support_api import read_events

pytestmark = pytest.mark.e2e

DEMO_REDIS_DB = 13

STATUS_FIELDS = {
    "status",
    "progress_percentage",
    "completed",
    "total",
    "success_rate",
    "estimated_time_remaining",
}


def batchline(
    *args: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a child process with the session's servers."""
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_submit_jsonl_then_status_json_reports_every_field(
    workers, service_env, tmp_path: Path
) -> None:
    batch_id = f"cli-{uuid.uuid4().hex[:8]}"
    manifest = tmp_path / "orders.jsonl"
    manifest.write_text("\n".join(json.dumps(order) for order in make_orders(7, batch_id)))

    submitted = batchline(
        "submit", str(manifest), "--priority", "high", "--batch-id", batch_id, env=service_env
    )
    assert submitted.returncode == 0, submitted.stderr
    assert json.loads(submitted.stdout)["batch_id"] == batch_id
    wait_for_final([batch_id])

    shown = batchline("status", batch_id, "--json", env=service_env)
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    assert set(status) >= STATUS_FIELDS
    assert (status["status"], status["total"], status["completed"]) == ("completed", 7, 7)
    assert (status["progress_percentage"], status["success_rate"]) == (100.0, 100.0)


def test_submit_rejects_a_bad_manifest_naming_the_field(service_env, tmp_path: Path) -> None:
    orders = make_orders(3, "cli-bad")
    orders[1]["language"] = "english"
    manifest = tmp_path / "orders.json"
    manifest.write_text(json.dumps(orders))
    before = ledger_counts()

    result = batchline("submit", str(manifest), env=service_env)

    assert result.returncode == 2
    assert "documents[1].language" in result.stderr and "two-letter" in result.stderr
    assert ledger_counts() == before


def test_submit_rejects_malformed_json(service_env, tmp_path: Path) -> None:
    manifest = tmp_path / "orders.json"
    manifest.write_text('[{"order_id": "x",')
    result = batchline("submit", str(manifest), env=service_env)
    assert result.returncode == 2
    assert "not valid JSON" in result.stderr


def test_status_of_unknown_batch_fails_clearly(service_env) -> None:
    result = batchline("status", "no-such-batch", "--json", env=service_env)
    assert result.returncode == 1
    assert "no batch with id 'no-such-batch'" in result.stderr


def test_bad_setting_stops_the_cli_naming_the_variable(service_env) -> None:
    result = batchline("status", "x", env={**service_env, "BATCH_MAX_ITEMS": "lots"})
    assert result.returncode == 2
    assert "BATCH_MAX_ITEMS" in result.stderr


def test_demo_uses_configured_servers_starts_nothing_and_serves_its_batches_live(
    service_env, tmp_path: Path, isolated_redis: Callable[[int], str]
) -> None:
    # Its own Redis database: the session's workers must not take the demo's chunks.
    env = {
        **service_env,
        "REDIS_URL": isolated_redis(DEMO_REDIS_DB),
        "BATCH_OUTPUT_DIR": str(tmp_path / "outbox"),
    }
    # Given the demo run with --api, its console (stderr) in a file the test reads
    command = ["demo", "--orders", "30", "--json", "--api", "--api-port", str(free_port())]
    console = tmp_path / "demo.err"
    with (
        console.open("w") as err,
        subprocess.Popen(
            [sys.executable, "-m", "cli", *command],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        ) as demo,
    ):
        try:
            # When the printed key asks the printed page's API for the demo's batches
            url, key, run_tag = _demo_page(console, demo)
            assert 'src="/ui/page.js"' in httpx.get(f"{url}/", timeout=30).text
            with httpx.Client(
                base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60
            ) as client:
                listed = client.get("/v1/batches", params={"project": "demo-project"}).json()
                ours = [
                    b["batch_id"] for b in listed["batches"] if b["batch_id"].startswith(run_tag)
                ]
                assert sorted(ours) == sorted(f"{run_tag}-{p}" for p in LANES)
                # Then the page's event stream follows a demo batch live to its end
                events = read_events(client, f"/v1/batches/{run_tag}-normal/events")
                assert events[-1].kind == "status"
            stdout, _ = demo.communicate(timeout=240)
        finally:
            if demo.poll() is None:
                demo.kill()
    result = subprocess.CompletedProcess(command, demo.returncode, stdout, console.read_text())
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout)
    assert summary["started_services"] == []
    # 30 sample orders plus the nine built to fail, each with its own error class
    assert summary["orders"] == 39 and summary["delivered"] >= 29
    failed = {
        f["order_id"].split("-fail-")[-1]: f["error_class"]
        for f in summary["failures"]
        if "-fail-" in f["order_id"]
    }
    assert failed == {
        "suspended": "CustomerSuspended",
        "dup-again": "DuplicateOrder",
        "exact-3": "PolicyViolation",
        "language": "InvalidInput",
        "topic": "PolicyViolation",
        "length": "QualityRejected",
    }
    # The microblog article is rewritten twice before it fails; a sample article may also
    # be sent back once (e.g. too close to an earlier one) and pass on its rewrite.
    assert summary["rewrites"] >= 2
    assert {batch["priority"] for batch in summary["batches"]} == set(LANES)
    assert set(summary["stage_timings"]) == {"preflight", "writing", "qc", "delivery"}
    assert len(list((tmp_path / "outbox").glob("*/*.receipt.json"))) == summary["delivered"]


def _demo_page(console: Path, demo: subprocess.Popen[str]) -> tuple[str, str, str]:
    """The page's URL, the key and the run tag the demo printed (once it submitted)."""
    found: dict[str, str] = {}

    def printed() -> bool:
        assert demo.poll() is None, console.read_text()[-2000:]
        text = console.read_text()
        for name, pattern in (
            ("url", r"batches page: (http://\S+)/"),
            ("key", r"API key \(paste it into the page\): (\S+)"),
            ("tag", r"batches \((demo\d+)\)"),
        ):
            match = re.search(pattern, text)
            if match:
                found[name] = match.group(1)
        return len(found) == 3

    wait_until(printed, timeout=180, interval=0.5)
    return found["url"], found["key"], found["tag"]


def test_submit_names_the_bad_jsonl_line_and_invalid_utf8(service_env, tmp_path: Path) -> None:
    orders = make_orders(2, "cli-jsonl")
    manifest = tmp_path / "orders.jsonl"
    manifest.write_text(json.dumps(orders[0]) + "\n" + json.dumps(orders[1])[:-3] + "\n")
    assert "line 2: not valid JSON" in batchline("submit", str(manifest), env=service_env).stderr

    manifest.write_bytes(b'[{"order_id": "caf\xe9"}]')
    manifest_json = manifest.rename(tmp_path / "orders.json")
    result = batchline("submit", str(manifest_json), env=service_env)
    assert result.returncode == 2 and "not UTF-8" in result.stderr


def test_worker_command_serves_its_lanes_and_stops_on_sigterm(service_env) -> None:
    import signal
    import time

    from celery_app import IO_LANES, app

    # Given `batchline worker --lanes high`: a prefork worker and (by default,
    # BATCH_IO_WORKER_PROCESSES=2) two threads workers for I/O
    worker = subprocess.Popen(
        [sys.executable, "-m", "cli", "worker", "--lanes", "high", "--concurrency", "1"],
        env={**os.environ, **service_env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    nodes = {
        "batchline-high@": [LANES["high"]],
        "batchline-high-io@": [IO_LANES["high"]],
        "batchline-high-io2@": [IO_LANES["high"]],
    }
    try:
        deadline = time.monotonic() + 60
        answered: set[str] = set()
        while answered != set(nodes) and time.monotonic() < deadline:
            replies = app.control.ping(destination=None, timeout=0.5)
            answered = {n for n in nodes for r in replies for k in r if k.startswith(n)}
        assert answered == set(nodes), f"only {answered} answered"
        # And the process we started became the small supervisor, under the same pid
        cmdline = Path(f"/proc/{worker.pid}/cmdline").read_bytes().split(b"\0")
        assert cmdline[1:3] == [b"-m", b"cli.supervisor"]
        # Then each consumes its own queue of the lane
        queues = app.control.inspect(timeout=2).active_queues() or {}
        for node, expected in nodes.items():
            mine = next(v for k, v in queues.items() if k.startswith(node))
            assert [queue["name"] for queue in mine] == expected
    finally:
        # And SIGTERM stops all three (the supervisor passes it on) with exit 0
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=90) == 0


def test_worker_command_refuses_an_unknown_lane(service_env) -> None:
    result = batchline("worker", "--lanes", "urgent", env=service_env)
    assert result.returncode == 2
    assert "unknown lane(s): urgent" in result.stderr


def test_order_shows_the_journey_through_every_stage(workers, service_env) -> None:
    from tasks import submit_batch

    batch_id = f"journey-{uuid.uuid4().hex[:8]}"
    orders = make_orders(2, batch_id)
    submit_batch(orders, "cli", "high", {"batch_id": batch_id})
    wait_for_final([batch_id])

    shown = batchline("order", orders[0]["order_id"], "--json", env=service_env)
    assert shown.returncode == 0, shown.stderr
    (journey,) = json.loads(shown.stdout)
    assert journey["state"] == "DELIVERED"
    assert [step["stage"] for step in journey["stages"]] == [
        "preflight",
        "writing",
        "qc",
        "delivery",
    ]
    assert "prompt" in journey["stages"][0]["output"]
    assert journey["receipt"]["published_url"] == journey["stages"][3]["output"]["published_url"]

    table = batchline("order", orders[0]["order_id"], env=service_env)
    assert table.returncode == 0 and "DELIVERED" in table.stdout
    missing = batchline("order", "no-such-order", env=service_env)
    assert missing.returncode == 1 and "no order with id" in missing.stderr
