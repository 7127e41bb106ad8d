"""A delivery repeated after a crash returns the first receipt and publishes nothing new."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import update

from ledger.db import transaction
from ledger.models import IdempotencyKey
from pipeline.manifest import OrderDocument
from tests.integration.helpers import make_orders

pytestmark = pytest.mark.integration


class CountingPublisher:
    """Counts calls; every call would be a real publish at a non-idempotent publisher."""

    def __init__(self) -> None:
        self.calls = 0

    def publish(self, *, key: str, batch_id: str, order_id: str, html_document: str,
                metadata: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
        self.calls += 1
        return {
            "idempotency_key": key,
            "published_url": f"https://pub.example/{order_id}/{self.calls}",
        }


@pytest.fixture()
def counting(monkeypatch: pytest.MonkeyPatch) -> CountingPublisher:
    publisher = CountingPublisher()
    monkeypatch.setattr("tasks.handlers.publisher", lambda: publisher)
    return publisher


def _deliver_once(order: OrderDocument, batch_id: str) -> dict[str, Any]:
    from ledger.items import ClaimedItem
    from pipeline.stages.preflight import run_preflight
    from pipeline.stages.writing import run_writing
    from tasks.handlers import StageContext, handle_delivery
    from tasks.preparers import prepare_delivery

    # As the chunk runner does it: the preparer first (it finds remembered receipts),
    # then the handler.
    article = run_writing(order, run_preflight(order)["prompt"])
    prepared = prepare_delivery(batch_id, [ClaimedItem(1, order.to_json(), 1)])[1]
    context = StageContext(batch_id=batch_id, attempt=1, prepared=prepared)
    return handle_delivery(order, article, context)


def test_redelivery_after_a_crash_returns_the_first_receipt(service_env, counting) -> None:
    # Given a delivery that published, then its worker died before the outcome committed
    batch_id = f"idem-{uuid.uuid4().hex[:8]}"
    order = OrderDocument.model_validate(make_orders(1, batch_id)[0])
    first = _deliver_once(order, batch_id)

    # When the chunk is delivered again
    second = _deliver_once(order, batch_id)

    # Then the publisher was called once and both runs report the same receipt
    assert counting.calls == 1
    assert second == first


def test_an_expired_key_is_forgotten(service_env, counting) -> None:
    from recovery.sweeper import sweep

    batch_id = f"ttl-{uuid.uuid4().hex[:8]}"
    order = OrderDocument.model_validate(make_orders(1, batch_id)[0])
    first = _deliver_once(order, batch_id)
    with transaction() as session:
        session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.key == first["receipt"]["idempotency_key"])
            .values(expires_at=IdempotencyKey.created_at)
        )

    assert sweep().expired_idempotency_keys >= 1
    _deliver_once(order, batch_id)
    assert counting.calls == 2
