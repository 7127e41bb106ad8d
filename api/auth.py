"""Bearer API keys: who the caller is, whether their scope allows a route, what they see.

Every route but ``/healthz`` depends on :func:`require`. A key limited to projects
gets 404 for another project's batch, the same answer as for an id that does not
exist, so ids cannot be probed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.errors import NotFound
from ledger.api_keys import principal_for
from ledger.db import transaction
from ledger.listing import batch_project
from pipeline.api_access import Principal, Scope, allows

_bearer = HTTPBearer(auto_error=False, description="An API key: batchline api-key create")
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def caller(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The principal of the request's ``Authorization: Bearer`` key.

    Raises:
        HTTPException: 401 without a key, or for a malformed, unknown or revoked one.
    """
    if credentials is None:
        raise HTTPException(401, "send an API key: Authorization: Bearer <key>", _CHALLENGE)
    with transaction() as session:
        principal = principal_for(session, credentials.credentials)
    if principal is None:
        raise HTTPException(401, "unknown or revoked API key", _CHALLENGE)
    return principal


def require(scope: Scope) -> Callable[[Principal], Principal]:
    """A dependency that admits keys of ``scope`` or higher (403 otherwise)."""

    def check(principal: Annotated[Principal, Depends(caller)]) -> Principal:
        if not allows(principal.scope, scope):
            raise HTTPException(403, f"this route needs a key of scope {scope.value}")
        return principal

    return check


Reader = Annotated[Principal, Depends(require(Scope.READ))]
Writer = Annotated[Principal, Depends(require(Scope.WRITE))]
Admin = Annotated[Principal, Depends(require(Scope.ADMIN))]


def visible_batch(principal: Principal, batch_id: str) -> str:
    """``batch_id`` if it exists and ``principal`` may see it.

    Raises:
        NotFound: no such batch, or it belongs to a project the key is not limited to.
    """
    with transaction() as session:
        project = batch_project(session, batch_id)
    if project is None or not principal.sees(project):
        raise NotFound(f"no batch with id {batch_id!r}")
    return batch_id
