"""``DELETE /v1/batches/{id}``: remove a finalized batch, keeping its delivery receipts."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.auth import Admin, visible_batch
from api.errors import Conflict
from tasks.deletion import DeleteRefused, delete_batch

router = APIRouter(prefix="/v1", tags=["batches"])


@router.delete(
    "/batches/{batch_id}",
    responses={409: {"description": "The batch is open, or recoveries refer to it"}},
)
def delete(batch_id: str, principal: Admin) -> dict[str, Any]:
    """Delete a finalized batch's orders and outputs in bounded steps (admin keys only).

    Delivery receipts and idempotency keys stay, so the same orders submitted again
    are never published twice. 409 while the batch is open or has recoveries.
    """
    visible_batch(principal, batch_id)
    try:
        return delete_batch(batch_id)
    except DeleteRefused as error:
        raise Conflict(str(error)) from None
