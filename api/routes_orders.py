"""``GET /v1/orders/{order_id}``: an order's journey, as ``batchline order`` prints it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.auth import Reader
from api.errors import NotFound
from ledger.db import transaction
from ledger.intake import orders_with_id
from ledger.listing import batch_project
from ledger.reports import order_journey

router = APIRouter(prefix="/v1", tags=["orders"])


@router.get("/orders/{order_id}")
def get_order(order_id: str, principal: Reader, batch_id: str | None = None) -> dict[str, Any]:
    """Every batch the order appeared in (a recovery repeats it): stage outputs and receipt.

    An order taken by ``POST /v1/orders`` also has ``intake`` (its record: pending,
    assigned or flushed, and its batch); while it waits, ``waiting`` says so.
    """
    with transaction() as session:
        journeys = [
            journey
            for journey in order_journey(session, order_id, batch_id)
            if principal.sees(batch_project(session, journey["batch_id"]) or "")
        ]
        accepted = [
            row.to_json()
            for row in orders_with_id(session, order_id)
            if principal.sees(row.project_uuid) and batch_id in (None, row.batch_id)
        ]
    if not journeys and not accepted:
        raise NotFound(f"no order with id {order_id!r}")
    answer: dict[str, Any] = {"order_id": order_id, "journeys": journeys}
    if accepted:  # taken one at a time (POST /v1/orders): its intake record
        answer["intake"] = accepted
    if any(row["state"] != "flushed" for row in accepted):
        answer["waiting"] = "accepted; waits for its batch (INTAKE_MAX_ORDERS or _WAIT_SECONDS)"
    return answer
