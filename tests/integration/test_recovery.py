"""``recover_failed_batch`` with real workers and a real webhook publisher.

The worker of this module runs on a Redis database of its own with the webhook
publisher (``tests.support_publisher_server``), which counts effective publishes
per order. Submissions and recoveries run in child processes pointed at that
database, so their feeds reach this worker only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import func, select

from cli.workers import ALL_LANES, spawn_worker, stop_workers
from ledger.catalog import upsert_catalog
from ledger.db import transaction
from ledger.models import Batch, Event, Item, StageOutput, StoredDocument
from metrics.keys import publisher_cache_key
from pipeline.catalog import Catalog, PublisherProfile
from pipeline.recovery import RecoveryRefused
from recovery.recover import recover_failed_batch
from tasks.status import batch_status
from tests.integration.helpers import (
    item_states,
    ledger_counts,
    register_webhook_publisher,
    wait_for_final,
    webhook_orders,
)
from tests.support_publisher_server import PublisherServer

pytestmark = pytest.mark.integration

RECOVERY_REDIS_DB = 10
DOMAIN = "recovery-news.example"

_SUBMIT = """
import json, sys
from tasks import submit_batch
orders, options = json.load(open(sys.argv[1]))
print(json.dumps(submit_batch(orders, "tests", "high", options)))
"""
_RECOVER = """
import json, sys
from recovery.recover import recover_failed_batch
batch_id, options = json.load(open(sys.argv[1]))
print(json.dumps(recover_failed_batch(batch_id, options)))
"""


class Stack:
    """This module's worker environment, and children that submit and recover in it."""

    def __init__(self, env: dict[str, str], tmp: Path) -> None:
        self.env = env
        self.tmp = tmp

    def _child(self, script: str, payload: Any) -> subprocess.Popen[str]:
        path = self.tmp / f"payload-{uuid.uuid4().hex}.json"
        path.write_text(json.dumps(payload))
        command = [sys.executable, "-c", script, str(path)]
        return subprocess.Popen(
            command, env={**os.environ, **self.env}, stdout=subprocess.PIPE, text=True
        )

    def submit(self, orders: list[dict[str, Any]], options: dict[str, Any]) -> dict[str, str]:
        return _answer(self._child(_SUBMIT, [orders, options]))

    def recover(self, batch_id: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
        return _answer(self._child(_RECOVER, [batch_id, options]))

    def recover_twice_at_once(self, batch_id: str) -> list[dict[str, Any]]:
        children = [self._child(_RECOVER, [batch_id, None]) for _ in range(2)]
        return [_answer(child) for child in children]


def _answer(child: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = child.communicate(timeout=60)
    assert child.returncode == 0
    answer: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return answer


@pytest.fixture(scope="module")
def server() -> Iterator[PublisherServer]:
    with PublisherServer() as running:
        yield running


@pytest.fixture(scope="module")
def stack(
    service_env: dict[str, str],
    server: PublisherServer,
    tmp_path_factory: pytest.TempPathFactory,
    module_redis: Callable[[int], str],
) -> Iterator[Stack]:
    """This module's worker, started once: its tests use batch ids and domains of their own."""
    tmp_path = tmp_path_factory.mktemp("recovery")
    env = {
        **service_env,
        "REDIS_URL": module_redis(RECOVERY_REDIS_DB),
        "DELIVERY_BACKEND": "webhook",
    }
    register_webhook_publisher(DOMAIN, server.url)
    worker = spawn_worker(
        ALL_LANES, concurrency=2, name="recovery", env=env, log_path=tmp_path / "worker.log"
    )
    try:
        yield Stack(env, tmp_path)
    finally:
        stop_workers([worker])


def _outputs(batch_id: str) -> dict[str, int]:
    """stage -> how many outputs the batch's items have."""
    with transaction() as session:
        rows = session.execute(
            select(StageOutput.stage, func.count())
            .join(Item, Item.id == StageOutput.item_id)
            .where(Item.batch_id == batch_id)
            .group_by(StageOutput.stage)
        )
        return {str(stage): int(n) for stage, n in rows}


def _failure_categories(batch_id: str) -> dict[str, str]:
    """order_id -> category of its failure (for FAILED items)."""
    with transaction() as session:
        rows = session.execute(
            select(Item.order_id, StageOutput.stage, StageOutput.output)
            .join(StageOutput, StageOutput.item_id == Item.id)
            .where(Item.batch_id == batch_id, Item.state == "FAILED", StageOutput.ok.is_(False))
        )
        return {order: f"{stage}:{output.get('category')}" for order, stage, output in rows}


def _events(batch_id: str, kind: str) -> list[dict[str, Any]]:
    with transaction() as session:
        query = select(Event.data).where(Event.batch_id == batch_id, Event.kind == kind)
        return [dict(data) for data in session.scalars(query)]


def test_recovery_delivers_each_failed_delivery_once_and_a_second_recovery_adds_nothing(
    stack: Stack, server: PublisherServer
) -> None:
    # Given a batch whose endpoint fails every other request, with one retry per order
    tag = f"rec-{uuid.uuid4().hex[:6]}"
    orders = webhook_orders(tag, 8, DOMAIN)
    server.fail_every_other(40)
    stack.submit(orders, {"batch_id": tag, "max_retries": 1})
    assert wait_for_final([tag], timeout=60) == {tag: "PARTIAL"}
    failed = {o: s for o, s in item_states(tag).items() if s == "FAILED"}
    assert failed and set(_failure_categories(tag).values()) == {"delivery:TRANSIENT"}
    before = _outputs(tag)

    # When the endpoint is healthy again and two recoveries race
    with server._state.lock:  # the outage is over: drop what is still programmed
        server._state.failures.clear()
    first, second = sorted(
        stack.recover_twice_at_once(tag), key=lambda r: r["recovery_batch_id"] is None
    )

    # Then one recovery batch holds every failed order, the other call created nothing
    recovery = first["recovery_batch_id"]
    assert recovery == f"{tag}.r1" and first["documents_to_retry"] == len(failed)
    assert second["recovery_batch_id"] is None
    assert second["skipped"] == {"already_recovered": len(failed)}
    assert wait_for_final([recovery], timeout=60) == {recovery: "COMPLETED"}
    # ... each order was published exactly once across both batches
    for order in orders:
        assert server.effective_publishes(str(order["order_id"])) == 1
    # ... the recovered orders were delivered again, not rewritten or checked again
    assert _outputs(tag) == before
    assert set(_outputs(recovery)) == {"delivery"}
    # ... both statuses show the link; the original's history stays as it was
    assert batch_status(tag)["status"] == "partial"
    assert batch_status(tag)["recovered_by"] == [recovery]
    assert batch_status(recovery)["origin_batch_id"] == tag
    assert _events(tag, "recovered_by")[0]["recovery_batch_id"] == recovery
    assert _events(tag, "recovery_finalized") == [
        {"recovery_batch_id": recovery, "status": "COMPLETED"}
    ]
    assert _events(recovery, "recovery_of")[0]["origin_batch_id"] == tag

    # And recovering the original again after the recovery finished adds nothing
    counts = ledger_counts()
    again = stack.recover(tag)
    assert again["recovery_batch_id"] is None and again["recovered_by"] == [recovery]
    assert ledger_counts() == counts


def test_manual_failure_needs_retry_all_once_the_catalog_is_fixed(
    stack: Stack, server: PublisherServer
) -> None:
    # Given a publisher in the catalog without a webhook: delivery fails (CONFIGURATION)
    domain = f"no-hook-{uuid.uuid4().hex[:6]}.example"
    _catalog(PublisherProfile(domain=domain, languages=("en",), topics=("camping",)))
    tag = f"man-{uuid.uuid4().hex[:6]}"
    orders = webhook_orders(tag, 3, domain)
    stack.submit(orders, {"batch_id": tag, "max_retries": 1})
    assert wait_for_final([tag], timeout=60) == {tag: "FAILED"}
    assert set(_failure_categories(tag).values()) == {"delivery:CONFIGURATION"}

    # When an operator recovers without retry_all, nothing is taken
    skipped = stack.recover(tag)
    assert skipped["recovery_batch_id"] is None
    assert skipped["skipped"] == {"needs_retry_all": 3}

    # Then after the catalog names the webhook, retry_all delivers every order once
    register_webhook_publisher(domain, server.url)
    redis.Redis.from_url(stack.env["REDIS_URL"]).delete(publisher_cache_key(domain))
    taken = stack.recover(tag, {"retry_all": True, "priority": "high"})
    recovery = taken["recovery_batch_id"]
    assert taken["documents_to_retry"] == 3
    assert wait_for_final([recovery], timeout=60) == {recovery: "COMPLETED"}
    assert all(server.effective_publishes(str(o["order_id"])) == 1 for o in orders)
    assert _priority(recovery) == "high"


def _catalog(profile: PublisherProfile) -> None:
    with transaction() as session:
        upsert_catalog(session, Catalog(publishers=(profile,)))


def _priority(batch_id: str) -> str:
    with transaction() as session:
        return str(session.scalar(select(Batch.priority).where(Batch.id == batch_id)))


@pytest.mark.parametrize(
    ("batch", "options", "field"),
    [
        ("no-such-batch", None, "batch_id"),
        ("BATCH", {"max_retries": -1}, "options.max_retries"),
        ("BATCH", {"priority": "urgent"}, "options.priority"),
        ("BATCH", {"order_ids": ["not-in-it"]}, "options.order_ids"),
        ("BATCH", {"surprise": True}, "options.surprise"),
    ],
)
def test_bad_recovery_input_is_refused_naming_the_field_and_writes_nothing(
    service_env: dict[str, str], batch: str, options: dict[str, Any] | None, field: str
) -> None:
    batch_id = _finished_batch() if batch == "BATCH" else batch
    counts = ledger_counts()
    with pytest.raises(RecoveryRefused) as refused:
        recover_failed_batch(batch_id, options)
    assert refused.value.field == field
    assert ledger_counts() == counts


def test_a_running_batch_is_not_recovered(service_env: dict[str, str]) -> None:
    batch_id = _finished_batch(finalized=False)
    with pytest.raises(RecoveryRefused, match="running"):
        recover_failed_batch(batch_id)


def _finished_batch(*, finalized: bool = True) -> str:
    """A batch row of one failed order, straight in the ledger (no worker needed)."""
    batch_id = f"direct-{uuid.uuid4().hex[:8]}"
    # A valid stored order: a recovery of it may reach any worker of the session, and a
    # damaged one would halt the whole system for every later test (DataCorruption).
    document = {**webhook_orders(batch_id, 1, DOMAIN)[0], "order_id": "only"}
    with transaction() as session:
        session.add(
            Batch(
                id=batch_id,
                project_uuid="tests",
                priority="normal",
                status="FAILED" if finalized else "RUNNING",
                options={},
                manifest_sha256="0" * 64,
                total_items=1,
                finalized_at=func.now() if finalized else None,
            )
        )
        session.flush()
        item = Item(
            batch_id=batch_id,
            position=0,
            order_id="only",
            customer_id="acme-outdoor",
            publisher_domain=DOMAIN,
            state="FAILED",
        )
        session.add(item)
        session.flush()
        session.add(StoredDocument(item_id=item.id, document=document))
    return batch_id


def test_cli_recover_prints_the_recovery_and_what_was_skipped(service_env: dict[str, str]) -> None:
    from typer.testing import CliRunner

    from cli.main import app as cli

    batch_id = _finished_batch()  # one failed order without a stored failure: DATA
    runner = CliRunner()
    skipped = runner.invoke(cli, ["recover", batch_id])
    assert skipped.exit_code == 0
    assert "nothing to recover" in skipped.output and "skipped 1: needs_retry_all" in skipped.output
    taken = runner.invoke(cli, ["recover", batch_id, "--all", "--order", "only", "--json"])
    assert json.loads(taken.output)["recovery_batch_id"] == f"{batch_id}.r1"
    refused = runner.invoke(cli, ["recover", batch_id, "--order", "nope"])
    assert refused.exit_code == 1 and "options.order_ids" in refused.output
    from tasks.control import cancel_batch

    cancel_batch(f"{batch_id}.r1")  # nothing of this test runs on after it
