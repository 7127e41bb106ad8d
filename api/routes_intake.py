"""``POST /v1/orders``: one order at a time, grouped into batches by ``OrderIntake``.

The API process keeps one intake (made on first use) whose thread flushes groups due
by age; beat's ``flush_intake`` entry covers the time no API process runs. An order is
in the ledger before the answer is sent, so a crash after it loses nothing.
"""

from __future__ import annotations

import threading
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool

from api.auth import Admin, Writer
from api.body import parse_order
from api.errors import NotFound
from tasks.intake import OrderIntake

router = APIRouter(prefix="/v1", tags=["orders"])

_made = threading.Lock()
_intake: OrderIntake | None = None


def intake() -> OrderIntake:
    """This process's intake, started on first use."""
    global _intake
    with _made:
        if _intake is None:
            _intake = OrderIntake()
        return _intake


@router.post(
    "/orders",
    status_code=202,
    responses={
        200: {"description": "This order id was accepted before with the same content"},
        409: {"description": "This order id was accepted before with other content"},
    },
)
async def accept_order(request: Request, response: Response, principal: Writer) -> dict[str, Any]:
    """Accept one order (``{"document", "project_uuid", "priority"}``) for its group's batch.

    202 once the order is stored; 200 for a resend of the same order; 422 for an
    invalid one (``document.language: ...``), which holds back no other order.
    """
    body = parse_order(await request.body())
    project = body["project_uuid"]
    if isinstance(project, str) and not principal.sees(project):
        raise NotFound(f"no project {project!r} for this key")
    record = await run_in_threadpool(intake().submit, body["document"], project, body["priority"])
    response.status_code = 202 if record.pop("created") else 200
    response.headers["Location"] = f"/v1/orders/{record['order_id']}"
    return record


@router.get("/intake")
def intake_stats(principal: Admin) -> dict[str, int]:
    """Pending orders (every intake's), batches flushed and orders refused by this process."""
    return intake().stats()


@router.post("/intake/flush")
def flush_intake(principal: Admin) -> dict[str, list[str]]:
    """Submit every pending order now, whatever its group's size or age."""
    return {"batch_ids": intake().flush()}
