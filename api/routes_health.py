"""``/healthz`` (the process answers; no key) and ``/readyz`` (it can do its work)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.auth import Reader
from api.readiness import readiness

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, bool]:
    """The process is alive (no key needed; checks nothing else)."""
    return {"alive": True}


@router.get("/readyz", responses={503: {"description": "Some check failed"}})
def readyz(request: Request, _: Reader) -> Any:
    """Redis, the ledger, migrations current, a worker on every lane, not halted (else 503)."""
    answer = readiness(request.app.state.lanes)
    return JSONResponse(answer, status_code=200 if answer["ready"] else 503)
