"""The HTTP API's response bodies and the submission's documented shape (pure pydantic).

The submission itself is validated by ``pipeline.manifest`` (through ``submit_batch``),
never by these models: :data:`SUBMIT_BODY_SCHEMA` only documents it in OpenAPI.
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import BaseModel


class Accepted(BaseModel):
    """A submitted batch: ``submit_batch``'s answer."""

    batch_id: str
    task_id: str


class BatchSummary(BaseModel):
    """One batch as ``GET /v1/batches`` lists it (its ledger row)."""

    batch_id: str
    project_uuid: str
    priority: str
    status: str
    total: int
    created_at: str
    finalized_at: str | None
    origin_batch_id: str | None


class BatchPage(BaseModel):
    """A page of batches; ``next_cursor`` is None on the last page."""

    batches: list[BatchSummary]
    next_cursor: str | None


class OrderRow(BaseModel):
    """One order of a batch and where it is."""

    order_id: str
    position: int
    state: str
    attempts: int
    error_class: str | None
    error_message: str | None
    customer_id: str
    publisher_domain: str
    updated_at: str


class OrderPage(BaseModel):
    """A page of a batch's orders; ``next_cursor`` is None on the last page."""

    orders: list[OrderRow]
    next_cursor: str | None


class SubmitBody(BaseModel):
    """``POST /v1/batches`` as JSON: the arguments of ``submit_batch`` (docs/api.md)."""

    documents: list[dict[str, Any]]
    project_uuid: str
    priority: str | None = None
    options: dict[str, Any] | None = None


SUBMIT_BODY_SCHEMA: Final[dict[str, Any]] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": SubmitBody.model_json_schema()},
            "application/x-ndjson": {
                "schema": {"type": "string", "description": "one order per line"}
            },
        },
    }
}
