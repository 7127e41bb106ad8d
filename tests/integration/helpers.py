"""Helpers for integration tests: ledger queries and waiting for batches to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from ledger import reports
from ledger.catalog import upsert_catalog
from ledger.db import transaction
from ledger.models import Batch, DeliveryReceipt, Event, Item, StageOutput
from pipeline.catalog import Catalog, PublisherProfile
from pipeline.settings import get_settings


def make_orders(count: int, tag: str) -> list[dict[str, Any]]:
    """Valid orders that all pass every stage."""
    from cli.sample_orders import sample_orders

    return sample_orders(count, seed=hash(tag) % 1000, tag=tag)


def wait_for_final(
    batch_ids: list[str], timeout: float = 120.0, each_poll: Callable[[], object] | None = None
) -> dict[str, str]:
    """Poll the ledger until every batch is finalized; return their statuses.

    ``each_poll`` runs before every poll, in the caller's thread (a chaos stack
    replacing a worker that exited meanwhile).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if each_poll is not None:
            each_poll()
        with transaction() as session:
            rows = session.execute(
                select(Batch.id, Batch.status).where(
                    Batch.id.in_(batch_ids), Batch.finalized_at.is_not(None)
                )
            )
            done = {batch_id: status for batch_id, status in rows}
        if len(done) == len(batch_ids):
            return done
        time.sleep(0.2)
    left = sorted(set(batch_ids) - set(done))
    raise TimeoutError(f"batches not finalized after {timeout}s: {left}\n{stall_report(left)}")


def stall_report(batch_ids: Sequence[str]) -> str:
    """Where the items of unfinished batches are, and what every Redis database queues.

    For a test that times out waiting: the ledger's view (state, queued, leased, by
    count) and each database's non-empty queues and unacknowledged messages, so a
    message lost, stolen or never sent shows in the failure itself.
    """
    with transaction() as session:
        rows = session.execute(
            select(
                Item.batch_id,
                Item.state,
                Item.queued_at.is_not(None),
                Item.lease_owner,
                func.count(),
            )
            .where(Item.batch_id.in_(batch_ids))
            .group_by(Item.batch_id, Item.state, Item.queued_at.is_not(None), Item.lease_owner)
        ).all()
    ledger = [f"{b} {state} queued={q} lease={owner} x{n}" for b, state, q, owner, n in rows]
    return "ledger: " + "; ".join(ledger) + "\nredis: " + _redis_queues()


def _redis_queues() -> str:
    import redis

    from bench.services import redis_url_with_db

    url = get_settings().redis_url
    if url is None:
        return "no REDIS_URL"
    found = []
    for db in range(16):
        # A db= keyword would lose to the URL's own database: redis-py lets the URL win.
        client = redis.Redis.from_url(redis_url_with_db(url, db), decode_responses=True)
        try:
            for key in client.scan_iter("batch.*", count=1000):
                if client.type(key) == "list":
                    found.append(f"db{db} {key!r}={client.llen(key)}")
            if unacked := client.hlen("unacked"):
                found.append(f"db{db} unacked={unacked}")
        finally:
            client.close()
    return ", ".join(found) or "every queue empty"


def ledger_counts() -> dict[str, int]:
    """Row counts of every ledger table (to prove that nothing was written)."""
    with transaction() as session:
        return {
            model.__tablename__: int(session.scalar(select(func.count()).select_from(model)) or 0)
            for model in (Batch, Item, StageOutput, DeliveryReceipt, Event)
        }


def item_states(batch_id: str) -> dict[str, str]:
    """order_id -> state for one batch."""
    with transaction() as session:
        rows = session.execute(select(Item.order_id, Item.state).where(Item.batch_id == batch_id))
        return {order_id: state for order_id, state in rows}


def receipts_per_item(batch_id: str) -> dict[int, int]:
    """item_id -> number of receipts."""
    with transaction() as session:
        rows = session.execute(
            select(DeliveryReceipt.item_id, func.count())
            .where(DeliveryReceipt.batch_id == batch_id)
            .group_by(DeliveryReceipt.item_id)
        )
        return {int(item): int(n) for item, n in rows}


def finalize_events(batch_id: str) -> int:
    """How many times the batch was finalized."""
    with transaction() as session:
        query = select(func.count()).where(Event.batch_id == batch_id, Event.kind == "finalized")
        return int(session.scalar(query) or 0)


def stage_output_count(batch_id: str) -> int:
    """How many stage outputs the batch has (grows with every item a stage finishes)."""
    with transaction() as session:
        query = (
            select(func.count())
            .select_from(StageOutput)
            .join(Item, Item.id == StageOutput.item_id)
            .where(Item.batch_id == batch_id)
        )
        return int(session.scalar(query) or 0)


def wait_until(predicate: Any, timeout: float = 30.0, interval: float = 0.05) -> None:
    """Poll ``predicate`` until it is true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"condition not met within {timeout}s")


def assert_each_delivered_once(batch_id: str) -> None:
    """Every delivered item has exactly one receipt and nothing else has one."""
    states = item_states(batch_id)
    delivered = sum(1 for state in states.values() if state == "DELIVERED")
    receipts = receipts_per_item(batch_id)
    assert len(receipts) == delivered
    assert set(receipts.values()) <= {1}


_SUBMIT = """
import json, sys
from tasks import submit_batch
for batch in json.load(open(sys.argv[1])):
    submit_batch(batch["orders"], "tests", batch["priority"], {"batch_id": batch["id"]})
"""


def submit_in_child(batches: list[dict[str, Any]], env: dict[str, str], tmp: Path) -> None:
    """Submit ``batches`` from a child process that uses ``env`` (e.g. its own Redis db)."""
    manifest = tmp / f"batches-{time.monotonic_ns()}.json"
    manifest.write_text(json.dumps(batches))
    command = [sys.executable, "-c", _SUBMIT, str(manifest)]
    subprocess.run(command, env={**os.environ, **env}, check=True)


def output_spans(
    batch_id: str, stages: Sequence[str] = ("preflight", "writing", "qc", "delivery")
) -> list[tuple[str, str, str, datetime, datetime]]:
    """``(stage, customer, publisher, started, finished)`` of one batch's stage outputs."""
    with transaction() as session:
        return reports.output_spans(session, [batch_id], stages)


def webhook_orders(tag: str, count: int, domain: str) -> list[dict[str, object]]:
    """Valid orders of one customer, all for the webhook publisher ``domain``."""
    return [
        {
            "order_id": f"{tag}-{n}",
            "customer_id": "acme-outdoor",
            "target_url": f"https://www.acme-outdoor.com/tents?c={tag}-{n}",
            "anchor_text": "Acme Outdoor",
            "publisher_domain": domain,
            "language": "en",
            "topic": "camping",
        }
        for n in range(count)
    ]


def register_webhook_publisher(domain: str, webhook_url: str) -> None:
    """Put a publisher that takes camping articles at ``webhook_url`` in the catalog."""
    profile = PublisherProfile(
        domain=domain,
        languages=("en",),
        topics=("camping",),
        min_words=400,
        max_words=1000,
        webhook_url=webhook_url,
    )
    with transaction() as session:
        upsert_catalog(session, Catalog(publishers=(profile,)))
