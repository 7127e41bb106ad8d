"""``/v1/batches``: submit, list, read, control, analyse and recover batches.

Each route checks the key, then calls the same function the Python API and the
CLI call (``submit_batch``, ``batch_status``, ``pause_batch``, ...): there is no
second validation path. Sync routes run in the server's thread pool.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from api.auth import Admin, Reader, Writer, visible_batch
from api.body import parse_options, parse_submission
from api.errors import Conflict, NotFound, RateLimited
from ledger.batches import find_batch
from ledger.db import transaction
from ledger.listing import BatchFilter, batch_page, order_page
from metrics.keys import rate_bucket_key
from metrics.redis_client import redis_client
from pipeline.api_access import Principal, allows, scope_to_submit
from pipeline.api_models import SUBMIT_BODY_SCHEMA, Accepted, BatchPage, OrderPage
from pipeline.paging import decode_cursor, encode_cursor
from pipeline.settings import get_settings
from recovery.analysis import analyze_batch_failures
from recovery.recover import recover_failed_batch
from tasks.control import ControlRefused, cancel_batch, pause_batch, resume_batch
from tasks.limits.rate import take
from tasks.status import batch_status
from tasks.submit import submit_batch

router = APIRouter(prefix="/v1", tags=["batches"])

BatchState = Literal["pending", "running", "paused", "completed", "partial", "failed", "cancelled"]
OrderState = Literal[
    "pending", "preflight", "writing", "qc", "approved", "delivered", "failed", "cancelled"
]
Limit = Annotated[int, Query(ge=1, le=500, description="Rows per page.")]


@router.post(
    "/batches",
    status_code=202,
    response_model=Accepted,
    openapi_extra=SUBMIT_BODY_SCHEMA,
    responses={200: {"description": "This batch_id was submitted before with the same content"}},
)
async def submit(request: Request, response: Response, principal: Writer) -> dict[str, str]:
    """Submit a batch (JSON, or JSONL with ``project_uuid``/``priority``/``batch_id`` in the query).

    202 with ``Location`` for a new batch; 200 when the client ``batch_id`` exists with the
    same content (nothing is created); 409 when it exists with other content.
    """
    raw = await request.body()
    arguments = parse_submission(
        raw, request.headers.get("content-type", ""), dict(request.query_params)
    )
    project = arguments["project_uuid"]
    if isinstance(project, str) and not principal.sees(project):
        raise NotFound(f"no project {project!r} for this key")
    needed = scope_to_submit(arguments["options"])
    if not allows(principal.scope, needed):
        raise HTTPException(403, f"options.on_complete needs a key of scope {needed.value}")
    await run_in_threadpool(_take_submit_token, principal)
    result, created = await run_in_threadpool(_submit, arguments)
    response.status_code = 202 if created else 200
    response.headers["Location"] = f"/v1/batches/{result['batch_id']}"
    return result


def _take_submit_token(principal: Principal) -> None:
    spec = get_settings().api_submit_spec()
    key = rate_bucket_key("api-submit", principal.key_id)
    wait = take(redis_client(), key, spec.per_minute, spec.burst)
    if wait > 0:
        raise RateLimited(max(1, math.ceil(wait)))


def _submit(arguments: dict[str, Any]) -> tuple[dict[str, str], bool]:
    """``submit_batch``, and whether it created the batch (False: a repeated ``batch_id``)."""
    options = arguments["options"]
    client_id = options.get("batch_id") if isinstance(options, dict) else None
    existed = False
    if isinstance(client_id, str):
        with transaction() as session:
            existed = find_batch(session, client_id) is not None
    return submit_batch(**arguments), not existed


@router.get("/batches", response_model=BatchPage)
def list_batches(
    principal: Reader,
    status: BatchState | None = None,
    priority: Literal["high", "normal", "low"] | None = None,
    project: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    limit: Limit = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Batches, newest first; pass ``next_cursor`` back as ``cursor`` for the next page."""
    after = None
    if cursor is not None:
        created, batch_id = decode_cursor(cursor, 2)
        after = (datetime.fromisoformat(str(created)), str(batch_id))
    where = BatchFilter(
        status, priority, project, created_after, created_before, principal.projects
    )
    with transaction() as session:
        rows = batch_page(session, where, limit=limit, after=after)
    last = rows[-1] if len(rows) == limit else None
    next_cursor = encode_cursor([last["created_at"], last["batch_id"]]) if last else None
    return {"batches": rows, "next_cursor": next_cursor}


@router.get("/batches/{batch_id}")
def get_batch(batch_id: str, principal: Reader) -> dict[str, Any]:
    """Status, counts, per-stage counts, ETA and recovery links (``batch_status``)."""
    return batch_status(visible_batch(principal, batch_id))


@router.get("/batches/{batch_id}/orders", response_model=OrderPage)
def list_orders(
    batch_id: str,
    principal: Reader,
    state: OrderState | None = None,
    limit: Limit = 100,
    cursor: str | None = None,
) -> dict[str, Any]:
    """The batch's orders in submission order, optionally only those in ``state``."""
    visible_batch(principal, batch_id)
    after = int(decode_cursor(cursor, 1)[0]) if cursor is not None else None
    with transaction() as session:
        rows = order_page(session, batch_id, state=state, limit=limit, after=after)
    next_cursor = encode_cursor([rows[-1]["position"]]) if len(rows) == limit else None
    return {"orders": rows, "next_cursor": next_cursor}


def _control(action: Any, batch_id: str) -> dict[str, Any]:
    try:
        result: dict[str, Any] = action(batch_id)
    except ControlRefused as error:
        raise Conflict(str(error)) from None
    return result


@router.post("/batches/{batch_id}/pause")
def pause(batch_id: str, principal: Writer) -> dict[str, Any]:
    """Pause a running batch (409 otherwise); running chunks finish."""
    return _control(pause_batch, visible_batch(principal, batch_id))


@router.post("/batches/{batch_id}/resume")
def resume(batch_id: str, principal: Writer) -> dict[str, Any]:
    """Resume a paused batch (409 otherwise) and send its waiting orders out."""
    return _control(resume_batch, visible_batch(principal, batch_id))


@router.post("/batches/{batch_id}/cancel")
def cancel(batch_id: str, principal: Writer) -> dict[str, Any]:
    """Cancel an open batch (409 once it has ended)."""
    return _control(cancel_batch, visible_batch(principal, batch_id))


@router.get("/batches/{batch_id}/failures")
def failures(batch_id: str, principal: Reader) -> dict[str, Any]:
    """The failure analysis with recommendations (``analyze_batch_failures``)."""
    return analyze_batch_failures(visible_batch(principal, batch_id))


@router.post("/batches/{batch_id}/recover", status_code=202)
async def recover(batch_id: str, request: Request, principal: Admin) -> dict[str, Any]:
    """Recover a finished batch's failed orders; the body is ``recover_failed_batch``'s options.

    409 while the batch is still open; 422 for a bad option.
    """
    await run_in_threadpool(visible_batch, principal, batch_id)
    raw = await request.body()
    return await run_in_threadpool(recover_failed_batch, batch_id, parse_options(raw))
