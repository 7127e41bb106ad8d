"""``/v1/ws/batches/{id}``: the same events as the SSE stream, as WebSocket messages.

Each message is ``{"id", "event", "data"}``; the socket closes after ``status``. The key
goes in the handshake's ``Authorization: Bearer`` header; a resume names the last id in
the ``last_event_id`` query parameter (it is not secret). A socket without a valid key,
or for a batch the key does not see, is closed before it is accepted: the client sees
the handshake refused (HTTP 403), with nothing sent.
"""

from __future__ import annotations

from fastapi import APIRouter, WebSocket
from fastapi.concurrency import run_in_threadpool

from api.auth import visible_batch
from api.errors import NotFound
from api.events import ProgressHub, batch_events
from ledger.api_keys import principal_for
from ledger.db import transaction
from pipeline.api_access import Principal, Scope, allows

router = APIRouter(prefix="/v1", tags=["events"])


def _principal(authorization: str) -> Principal | None:
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    with transaction() as session:
        return principal_for(session, token.strip())


@router.websocket("/ws/batches/{batch_id}")
async def batch_socket(
    websocket: WebSocket, batch_id: str, last_event_id: str | None = None
) -> None:
    """Send the batch's progress, milestones and final status, then close."""
    principal = await run_in_threadpool(_principal, websocket.headers.get("authorization", ""))
    if principal is None:
        await websocket.close(code=4401, reason="unknown or missing API key")
        return
    if not allows(principal.scope, Scope.READ):
        await websocket.close(code=4403, reason="this route needs a key of scope read")
        return
    try:
        await run_in_threadpool(visible_batch, principal, batch_id)
    except NotFound as error:
        await websocket.close(code=4404, reason=str(error))
        return
    await websocket.accept()
    hub: ProgressHub = websocket.app.state.hub
    async for event in batch_events(hub, batch_id, last_event_id):
        if event is not None:  # WebSocket pings keep the connection; no keep-alive needed
            await websocket.send_json(event.as_dict())
    await websocket.close()
