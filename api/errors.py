"""How the API turns the Python API's exceptions into HTTP answers, without stack traces.

Every error body is ``{"error": "<field>: <problem>", "field", "problem"}`` (the
``ManifestError`` form) or ``{"error": "<reason>"}``: 422 for bad input, 404 for an
unknown (or invisible) id, 409 for a control the batch's state refuses.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from pipeline.errors import UnknownBatch
from pipeline.manifest import ManifestError
from pipeline.recovery import RecoveryRefused
from tasks.intake import IntakeConflict
from tasks.submit import BatchConflict

log = structlog.get_logger(__name__)


class NotFound(LookupError):
    """An id that does not exist, or that the caller's key may not see (the same answer)."""


class Conflict(RuntimeError):
    """The request is valid but the batch's state refuses it (409, with the reason)."""


class BodyTooLarge(ValueError):
    """The request body is longer than ``API_MAX_BODY_BYTES``."""


class RateLimited(RuntimeError):
    """The key's submit bucket is empty; ``retry_after`` seconds until a token is back."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many submits with this key: retry in {retry_after} s")
        self.retry_after = retry_after


def error_body(
    message: str, field: str | None = None, problem: str | None = None
) -> dict[str, Any]:
    """The JSON body of every error answer."""
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body.update(field=field, problem=problem)
    return body


def _manifest(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ManifestError)
    # A recovery of an unfinished batch is a state conflict, not bad input.
    if isinstance(error, RecoveryRefused) and error.field == "batch_id":
        return JSONResponse(error_body(error.problem), status_code=409)
    status = 409 if isinstance(error, BatchConflict | IntakeConflict) else 422
    return JSONResponse(error_body(str(error), error.field, error.problem), status_code=status)


def _validation(_: Request, error: Exception) -> JSONResponse:
    """FastAPI's own parameter checks, in the ManifestError form (first problem only)."""
    assert isinstance(error, RequestValidationError)
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"][1:]) or str(first["loc"][0])
    problem = str(first["msg"])
    return JSONResponse(error_body(f"{field}: {problem}", field, problem), status_code=422)


def _http(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    return JSONResponse(
        error_body(str(error.detail)), status_code=error.status_code, headers=error.headers
    )


def _rate_limited(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RateLimited)
    return JSONResponse(
        error_body(str(error)), status_code=429, headers={"Retry-After": str(error.retry_after)}
    )


def _unexpected(request: Request, error: Exception) -> JSONResponse:
    # Logged here with its traceback; the caller learns only that it failed.
    log.exception("api.unexpected_error", path=request.url.path, error_class=type(error).__name__)
    return JSONResponse(error_body("internal error"), status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    """Map every exception the routes may raise to its status code and body."""
    app.add_exception_handler(ManifestError, _manifest)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(RateLimited, _rate_limited)
    for kind, status in (
        (UnknownBatch, 404),
        (NotFound, 404),
        (Conflict, 409),
        (BodyTooLarge, 413),
    ):
        app.add_exception_handler(kind, _plain(status))
    app.add_exception_handler(Exception, _unexpected)


def _plain(status: int) -> Any:
    def handle(_: Request, error: Exception) -> JSONResponse:
        return JSONResponse(error_body(str(error)), status_code=status)

    return handle
