"""``GET /v1/batches/{id}/events``: a batch's progress as Server-Sent Events.

One :class:`ProgressHub` per API process reads each *watched* batch's Redis progress
hash (``batch:progress:<id>``) every ``API_EVENTS_INTERVAL_SECONDS`` and hands the
snapshot to every client of that batch: fifty clients of one batch cost one HGETALL
per interval, and none polls the ledger (only a lost hash is rebuilt from it, once).

Events: ``progress`` (counts, stages, percentage, ETA) whenever the hash changed,
``milestone`` when the ended share passes 25, 50, 75 and 100 %, and ``status``
with the final status, after which the stream ends. Every event's id is
``<version>-<ended>``: a client that reconnects with ``Last-Event-ID`` gets no
snapshot it already has and no milestone it has already passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Final

import structlog
from fastapi import APIRouter, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from api.auth import Reader, visible_batch
from metrics.progress import is_complete, read_progress
from metrics.redis_client import redis_client
from pipeline.progress_events import (
    Snapshot,
    StreamEvent,
    event_id,
    events_after,
    parse_event_id,
)
from pipeline.settings import get_settings
from pipeline.states import FINAL_BATCH_STATUSES
from tasks.status import batch_status

router = APIRouter(prefix="/v1", tags=["events"])
log = structlog.get_logger(__name__)

#: A comment line this often keeps proxies from closing a quiet stream.
KEEPALIVE_SECONDS: Final = 15.0


def read_snapshot(batch_id: str) -> Snapshot:
    """The batch's progress from its hash (rebuilt from the ledger when Redis lost it)."""
    progress = read_progress(redis_client(), batch_id)
    if is_complete(progress) and progress.get("status", "") not in _FINAL:
        return Snapshot.from_hash(batch_id, progress)
    # Lost, or final: batch_status rebuilds the hash once and reads the ledger's status.
    return Snapshot.from_status(batch_status(batch_id))


_FINAL: Final = frozenset(status.lower() for status in FINAL_BATCH_STATUSES)


@dataclass
class _Watch:
    """One watched batch: its newest snapshot, and the clients waiting for the next."""

    snapshot: Snapshot | None = None
    version: int = 0
    clients: int = 0
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    poller: asyncio.Task[None] | None = None


class ProgressHub:
    """Shares one reader of each watched batch's progress among all its clients."""

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._watches: dict[str, _Watch] = {}

    def watched(self) -> int:
        """How many batches have a reader right now (for tests and metrics)."""
        return len(self._watches)

    async def follow(self, batch_id: str, quiet: float) -> AsyncGenerator[Snapshot | None]:
        """Yield the batch's snapshot now and after every change, until it is final.

        Yields None after ``quiet`` seconds without a change (time for a keep-alive).
        """
        watch = self._watches.get(batch_id)
        if watch is None:
            watch = self._watches[batch_id] = _Watch()
            watch.poller = asyncio.create_task(self._poll(batch_id, watch))
        watch.clients += 1
        try:
            seen = 0
            while True:
                if not await self._changed(watch, seen, quiet):
                    yield None
                    continue
                seen = watch.version
                assert watch.snapshot is not None
                yield watch.snapshot
                if watch.snapshot.final:
                    return
        finally:
            watch.clients -= 1
            if watch.clients == 0 and self._watches.get(batch_id) is watch:
                del self._watches[batch_id]
                if watch.poller is not None:
                    watch.poller.cancel()

    @staticmethod
    async def _changed(watch: _Watch, seen: int, quiet: float) -> bool:
        """Wait until the watch holds a newer snapshot than ``seen`` (False: ``quiet`` passed)."""
        async with watch.changed:
            try:
                await asyncio.wait_for(watch.changed.wait_for(lambda: watch.version != seen), quiet)
            except TimeoutError:
                return False
        return True

    async def _poll(self, batch_id: str, watch: _Watch) -> None:
        while True:
            try:
                snapshot = await run_in_threadpool(read_snapshot, batch_id)
            except Exception as error:  # Redis or the ledger away: clients wait, we retry
                log.warning("api.events_read_failed", batch_id=batch_id, error=str(error))
                await asyncio.sleep(self._interval)
                continue
            if snapshot != watch.snapshot:
                async with watch.changed:
                    watch.snapshot, watch.version = snapshot, watch.version + 1
                    watch.changed.notify_all()
            if snapshot.final:
                return
            await asyncio.sleep(self._interval)


def _sse(event: StreamEvent | None) -> str:
    if event is None:
        return ": keep-alive\n\n"
    data = json.dumps(event.data, separators=(",", ":"))
    return f"id: {event.id}\nevent: {event.kind}\ndata: {data}\n\n"


async def batch_events(
    hub: ProgressHub, batch_id: str, last_id: str | None
) -> AsyncIterator[StreamEvent | None]:
    """The batch's events after ``last_id`` until its final status (None: a keep-alive)."""
    sent_id, ended = last_id, parse_event_id(last_id)
    snapshots = hub.follow(batch_id, KEEPALIVE_SECONDS)
    try:
        async for snapshot in snapshots:
            if snapshot is None:
                yield None
                continue
            for event in events_after(snapshot, sent_id, ended):
                yield event
            sent_id, ended = event_id(snapshot), snapshot.ended
            if snapshot.final:
                return
    finally:
        with contextlib.suppress(Exception):
            await snapshots.aclose()


async def _stream(hub: ProgressHub, batch_id: str, last_id: str | None) -> AsyncIterator[str]:
    async for event in batch_events(hub, batch_id, last_id):
        yield _sse(event)


@router.get(
    "/batches/{batch_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def events(
    batch_id: str,
    request: Request,
    principal: Reader,
    last_event_id: str | None = Header(default=None),
) -> StreamingResponse:
    """Progress, milestones and the final status as Server-Sent Events (resume: Last-Event-ID)."""
    await run_in_threadpool(visible_batch, principal, batch_id)
    hub: ProgressHub = request.app.state.hub
    return StreamingResponse(
        _stream(hub, batch_id, last_event_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def make_hub() -> ProgressHub:
    """A hub reading every ``API_EVENTS_INTERVAL_SECONDS``."""
    return ProgressHub(get_settings().api_events_interval_seconds)
