"""``GET /v1/orders/{order_id}``: an order's journey, as ``batchline order`` prints it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.auth import Reader
from api.errors import NotFound
from ledger.db import transaction
from ledger.listing import batch_project
from ledger.reports import order_journey

router = APIRouter(prefix="/v1", tags=["orders"])


@router.get("/orders/{order_id}")
def get_order(order_id: str, principal: Reader, batch_id: str | None = None) -> dict[str, Any]:
    """Every batch the order appeared in (a recovery repeats it): stage outputs and receipt."""
    with transaction() as session:
        journeys = [
            journey
            for journey in order_journey(session, order_id, batch_id)
            if principal.sees(batch_project(session, journey["batch_id"]) or "")
        ]
    if not journeys:
        raise NotFound(f"no order with id {order_id!r}")
    return {"order_id": order_id, "journeys": journeys}
