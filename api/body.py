"""Request bodies: the ``API_MAX_BODY_BYTES`` limit, and a submission as JSON or JSONL.

The limit is enforced while the body arrives (a declared ``Content-Length`` over it
is refused before a byte is read), so an oversized upload never sits in memory.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import BodyTooLarge
from pipeline.manifest import ManifestError

#: Media types read as one order per line.
JSONL_TYPES = ("application/x-ndjson", "application/jsonl", "application/x-jsonlines")
#: The fields of a JSON submission (the arguments of ``submit_batch``).
SUBMIT_FIELDS = ("documents", "project_uuid", "priority", "options")
#: The fields of a single order (the arguments of ``OrderIntake.submit``).
ORDER_FIELDS = ("document", "project_uuid", "priority")


class BodyLimit:
    """ASGI middleware: raise :class:`BodyTooLarge` once a body exceeds ``limit`` bytes."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on with a receive that counts the body's bytes."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            receive = _refuse(self.limit)
        await self.app(scope, _counting(receive, self.limit), send)


def _refuse(limit: int) -> Receive:
    async def receive() -> Message:
        raise BodyTooLarge(f"request body larger than API_MAX_BODY_BYTES ({limit} bytes)")

    return receive


def _counting(receive: Receive, limit: int) -> Receive:
    seen = 0

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(f"request body larger than API_MAX_BODY_BYTES ({limit} bytes)")
        return message

    return counted


def parse_submission(raw: bytes, content_type: str, query: dict[str, str]) -> dict[str, Any]:
    """The arguments of ``submit_batch`` from a request body.

    A JSON body is an object with ``documents``, ``project_uuid``, ``priority`` and
    ``options``. A JSONL body holds one order per line; ``project_uuid``, ``priority``
    and ``batch_id`` then come from the query string.

    Raises:
        ManifestError: the body is not UTF-8, not JSON, or has unknown fields.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ManifestError(
            "body", f"not UTF-8 text ({error.reason} at byte {error.start})"
        ) from None
    if content_type.split(";")[0].strip().lower() in JSONL_TYPES:
        return _from_jsonl(text, query)
    body = _loads(text, "body")
    if not isinstance(body, dict):
        raise ManifestError("body", "must be a JSON object with documents and project_uuid")
    return _fields(body, SUBMIT_FIELDS)


def parse_order(raw: bytes) -> dict[str, Any]:
    """The arguments of ``OrderIntake.submit`` from a JSON body.

    Raises:
        ManifestError: the body is not JSON, not an object, or has unknown fields.
    """
    body = _loads(raw.decode("utf-8", errors="replace"), "body")
    if not isinstance(body, dict):
        raise ManifestError("body", "must be a JSON object with document and project_uuid")
    return _fields(body, ORDER_FIELDS)


def _fields(body: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    unknown = sorted(set(body) - set(names))
    if unknown:
        raise ManifestError(unknown[0], "unknown field")
    return {name: body.get(name) for name in names}


def parse_options(raw: bytes) -> Any:
    """An optional JSON body (e.g. recovery options); None when empty.

    Raises:
        ManifestError: the body is not JSON.
    """
    if not raw.strip():
        return None
    return _loads(raw.decode("utf-8", errors="replace"), "body")


def _from_jsonl(text: str, query: dict[str, str]) -> dict[str, Any]:
    documents = [
        _loads(line, f"body line {number}")
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip()
    ]
    options = {"batch_id": query["batch_id"]} if query.get("batch_id") else None
    return {
        "documents": documents,
        "project_uuid": query.get("project_uuid"),
        "priority": query.get("priority"),
        "options": options,
    }


def _loads(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ManifestError(where, f"not valid JSON: {error.msg}") from None
    except RecursionError:
        raise ManifestError(where, "not valid JSON: nested too deeply") from None
