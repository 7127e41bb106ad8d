"""``DELETE /v1/batches/{id}`` through a real API process, real workers and a real publisher.

As in ``test_recovery``, this module's worker and API run on a Redis database of
their own with the webhook publisher (``tests.support_publisher_server``), which
counts every request per order: a deleted batch submitted again must not send one.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import func, select, update

from cli.workers import ALL_LANES, spawn_worker, stop_workers
from ledger.db import transaction
from ledger.deletion import delete_items_step
from ledger.models import Batch, DeliveryReceipt, Event, IdempotencyKey, Item, StageOutput
from metrics.keys import progress_key
from tests.integration.helpers import (
    item_states,
    register_webhook_publisher,
    wait_for_final,
    webhook_orders,
)
from tests.support_api import make_key, running_api
from tests.support_publisher_server import PublisherServer

pytestmark = pytest.mark.integration

DELETE_REDIS_DB = 11
DOMAIN = "delete-news.example"


@pytest.fixture(scope="module")
def server() -> Iterator[PublisherServer]:
    with PublisherServer() as running:
        yield running


@pytest.fixture(scope="module")
def api(
    service_env: dict[str, str],
    server: PublisherServer,
    tmp_path_factory: pytest.TempPathFactory,
    module_redis: Callable[[int], str],
) -> Iterator[Api]:
    """The API and one worker on this module's Redis database, delivering by webhook.

    Started once for the module (each start and stop takes seconds): every test
    submits batches of its own ids and leaves none running.
    """
    tmp_path = tmp_path_factory.mktemp("batch-delete")
    env = {
        **service_env,
        "REDIS_URL": module_redis(DELETE_REDIS_DB),
        "DELIVERY_BACKEND": "webhook",
        # Two orders per step: a batch of four is deleted in several transactions.
        "BATCH_PRUNE_BATCH_SIZE": "2",
    }
    register_webhook_publisher(DOMAIN, server.url)
    worker = spawn_worker(
        ALL_LANES, concurrency=2, name="delete", env=env, log_path=tmp_path / "worker.log"
    )
    try:
        with running_api(env, tmp_path / "api.log") as running:
            yield Api(running.url, env)
    finally:
        stop_workers([worker])


@dataclass(frozen=True)
class Api:
    """Where this module's API answers, and the environment its worker runs in."""

    url: str
    env: dict[str, str]

    def resume_all(self) -> None:
        """``resume_all`` from a child on this module's Redis, so its feed reaches the worker."""
        script = "from tasks.control import resume_all; resume_all()"
        subprocess.run([sys.executable, "-c", script], env={**os.environ, **self.env}, check=True)


def _client(api: Api, scope: str, *projects: str) -> httpx.Client:
    token = make_key(scope, *projects)[0]
    return httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {token}"}, timeout=60)


def _submit(client: httpx.Client, orders: list[dict[str, Any]], batch_id: str) -> httpx.Response:
    body = {"documents": orders, "project_uuid": "deletes", "options": {"batch_id": batch_id}}
    return client.post("/v1/batches", json=body)


def _count(model: Any, *where: Any) -> int:
    with transaction() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def test_a_deleted_delivered_batch_submitted_again_publishes_nothing_twice(
    api: Api, server: PublisherServer
) -> None:
    tag = f"del-{uuid.uuid4().hex[:6]}"
    orders = webhook_orders(tag, 4, DOMAIN)
    with _client(api, "admin") as admin:
        # Given a batch whose four orders were each published once
        assert _submit(admin, orders, tag).status_code == 202
        assert wait_for_final([tag], timeout=120) == {tag: "COMPLETED"}
        assert all(server.requests(str(order["order_id"])) == 1 for order in orders)
        receipts = _count(DeliveryReceipt, DeliveryReceipt.batch_id == tag)
        assert receipts == 4

        # When it is deleted
        answer = admin.delete(f"/v1/batches/{tag}")
        assert answer.status_code == 200, answer.text
        assert answer.json()["deleted"]["orders"] == 4
        assert answer.json()["deleted"]["outputs"] >= 16  # four stages, four orders
        assert answer.json()["receipts_kept"] == 4
        # Then its orders, outputs and log are gone, its receipts stay
        assert admin.get(f"/v1/batches/{tag}").status_code == 404
        assert not redis.Redis.from_url(api.env["REDIS_URL"]).exists(progress_key(tag))
        assert _count(Item, Item.batch_id == tag) == 0
        assert _count(Event, Event.batch_id == tag) == 0
        assert _count(DeliveryReceipt, DeliveryReceipt.batch_id == tag) == 4
        kept = select(DeliveryReceipt.idempotency_key).where(DeliveryReceipt.batch_id == tag)
        assert _count(IdempotencyKey, IdempotencyKey.key.in_(kept)) == 4
        assert admin.delete(f"/v1/batches/{tag}").status_code == 404

        # When the same orders are submitted again under the same batch id
        assert _submit(admin, orders, tag).status_code == 202
        assert wait_for_final([tag], timeout=120) == {tag: "COMPLETED"}
        # Then every order ends delivered, and the publisher never heard of them again
        assert set(item_states(tag).values()) == {"DELIVERED"}
        assert all(server.requests(str(order["order_id"])) == 1 for order in orders)

        # When it is deleted again, its idempotency keys expire (TTL), and it comes back
        assert admin.delete(f"/v1/batches/{tag}").status_code == 200
        with transaction() as session:
            session.execute(
                update(IdempotencyKey)
                .where(IdempotencyKey.key.in_(kept))
                .values(expires_at=func.now() - timedelta(hours=1))
            )
        assert _submit(admin, orders, tag).status_code == 202
        assert wait_for_final([tag], timeout=120) == {tag: "COMPLETED"}
    # Then the kept receipts alone stop a second publish
    assert set(item_states(tag).values()) == {"DELIVERED"}
    for order in orders:
        assert server.requests(str(order["order_id"])) == 1
        assert server.effective_publishes(str(order["order_id"])) == 1


def test_delete_needs_admin_a_visible_finalized_batch(
    api: Api, halt: Callable[[str], object]
) -> None:
    tag = f"del-open-{uuid.uuid4().hex[:6]}"
    with _client(api, "admin") as admin:
        assert admin.delete("/v1/batches/no-such-batch").status_code == 404
        # Given a batch that cannot end: the system is halted, nothing is claimed
        halt("test: keep a batch open")
        assert _submit(admin, webhook_orders(tag, 2, DOMAIN), tag).status_code == 202
        # Then only an admin key of its project may try, and an open batch is refused
        with _client(api, "write") as writer:
            assert writer.delete(f"/v1/batches/{tag}").status_code == 403
        with _client(api, "admin", "another-project") as stranger:
            assert stranger.delete(f"/v1/batches/{tag}").status_code == 404
        refused = admin.delete(f"/v1/batches/{tag}")
        assert refused.status_code == 409
        assert "still open" in refused.json()["error"]
        assert _count(Item, Item.batch_id == tag) == 2
        # ... and once it ended, it may go
        api.resume_all()
        assert wait_for_final([tag], timeout=120)[tag] == "COMPLETED"
        # Given a delete interrupted after its first step (one order gone)
        with transaction() as session:
            assert delete_items_step(session, tag, 1)[0] == 1
        # Then the next delete finishes it
        finished = admin.delete(f"/v1/batches/{tag}")
        assert finished.status_code == 200
        assert finished.json()["deleted"]["orders"] == 1
        outputs = StageOutput.item_id.in_(select(Item.id).where(Item.batch_id == tag))
        assert _count(StageOutput, outputs) == 0


def test_a_batch_with_recoveries_is_deleted_only_after_them(api: Api) -> None:
    # Given a finalized batch and a finalized recovery of it (ledger rows: no orders)
    root = f"del-root-{uuid.uuid4().hex[:6]}"
    recovery = f"{root}.r1"
    now = datetime.now(UTC)
    common = {"project_uuid": "deletes", "priority": "low", "status": "COMPLETED"}
    with transaction() as session:
        for batch_id, origin in ((root, None), (recovery, root)):
            session.add(
                Batch(
                    id=batch_id,
                    manifest_sha256="0" * 64,
                    total_items=0,
                    options={},
                    finalized_at=now,
                    origin_batch_id=origin,
                    root_batch_id=origin,
                    recovery_round=1 if origin else None,
                    **common,
                )
            )
            session.flush()
    with _client(api, "admin") as admin:
        # Then the root is refused while its recovery exists
        refused = admin.delete(f"/v1/batches/{root}")
        assert refused.status_code == 409
        assert recovery in refused.json()["error"]
        # ... and goes once the recovery went
        assert admin.delete(f"/v1/batches/{recovery}").status_code == 200
        assert admin.delete(f"/v1/batches/{root}").status_code == 200
        assert admin.get(f"/v1/batches/{root}").status_code == 404
