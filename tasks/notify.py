"""Notifications to operators: record once in the ledger, send from ``batch.maintenance``.

The API for the rest of batchline is :func:`notify` (its own transaction) and
:func:`record_notification` (inside the caller's). Either writes the event to the
outbox (``ledger.notifications``: at most once per (batch, kind)) and, once that
commits, enqueues ``batchline.maintenance.notify``; nothing waits for the send,
and no failure here reaches the caller. The task POSTs the signed envelope
(``pipeline.notify``) to every ``BATCH_NOTIFY_URLS`` receiver, retried with
tenacity (exponential backoff with jitter), and marks the event sent; with no
URL the event goes to the log. An event whose sender died, or whose enqueue was
lost, is sent again by the sweeper (:func:`resend_unsent`) with the same event id.
"""

from __future__ import annotations

from typing import Any

import httpx
import structlog
from sqlalchemy import event
from sqlalchemy.orm import Session
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from celery_app import app
from ledger.batches import state_counts
from ledger.db import transaction
from ledger.notifications import (
    claim_event,
    mark_sent,
    queue_unsent_events,
    record_event,
    release_event,
)
from metrics.progress import read_progress
from metrics.redis_client import redis_client
from pipeline.notify import (
    FINALIZED,
    SIGNATURE_HEADER,
    body_bytes,
    envelope,
    milestones_crossed,
    progress_kind,
    sign,
)
from pipeline.settings import get_settings

log = structlog.get_logger(__name__)
TASK_NAME = "batchline.maintenance.notify"


class ReceiverError(Exception):
    """A receiver did not take the notification (a 5xx, 408, 429 or a transport error)."""


def notify(
    batch_id: str, kind: str, data: dict[str, Any] | None = None, *, emergency: bool = False
) -> bool:
    """Record the (batch, kind) event and have it sent; return False if it existed already.

    Never raises: a notification must not fail what it reports on.
    """
    try:
        with transaction() as session:
            return record_notification(session, batch_id, kind, data, emergency=emergency)
    except Exception as error:
        log.warning("notify.unrecorded", batch_id=batch_id, kind=kind, error=str(error))
        return False


def record_notification(
    session: Session,
    batch_id: str,
    kind: str,
    data: dict[str, Any] | None = None,
    *,
    emergency: bool = False,
) -> bool:
    """Record the event in the caller's transaction; it is enqueued after that commits."""
    key = record_event(session, batch_id=batch_id, kind=kind, data=data or {}, emergency=emergency)
    if key is None:
        return False
    event.listen(session, "after_commit", lambda _: _enqueue(key), once=True)
    return True


def _enqueue(key: str) -> None:
    try:
        send_notification.apply_async(args=[key])
    except Exception as error:
        log.warning("notify.not_enqueued", key=key, error=str(error))


def after_chunk(batch_id: str, ended_now: int) -> None:
    """Record the progress milestones the chunk's ``ended_now`` orders crossed.

    Reads the batch's progress hash (just updated by the chunk); the hash's
    counters are atomic, so each milestone is crossed by exactly one chunk.
    """
    if ended_now <= 0:
        return
    try:
        progress = read_progress(redis_client(), batch_id)
        ended = sum(int(float(progress.get(f) or 0)) for f in ("completed", "failed", "cancelled"))
        total = int(float(progress.get("total") or 0))
    except Exception as error:
        log.warning("notify.progress_unavailable", batch_id=batch_id, error=str(error))
        return
    for percent in milestones_crossed(ended - ended_now, ended, total):
        notify(
            batch_id, progress_kind(percent), {"percent": percent, "ended": ended, "total": total}
        )


def resend_unsent(grace_seconds: float = 30.0) -> int:
    """Enqueue every event recorded but not sent (its sender died, its message was lost).

    Each event is queued once per ``BATCH_NOTIFY_REQUEUE_SECONDS`` at most, however
    often the sweeper runs, until a sender takes it.
    """
    requeue = get_settings().batch_notify_requeue_seconds
    with transaction() as session:
        keys = queue_unsent_events(session, grace_seconds=grace_seconds, requeue_seconds=requeue)
    for key in keys:
        _enqueue(key)
    return len(keys)


def _details(batch_id: str, kind: str) -> dict[str, Any]:
    """What is gathered at send time: a finalized batch's counts and failure summary."""
    if kind != FINALIZED:
        return {}
    with transaction() as session:
        counts = state_counts(session, batch_id)
    return {"counts": counts, "analysis": _analysis_summary(batch_id)}


def _analysis_summary(batch_id: str) -> dict[str, Any]:
    try:
        from recovery.analysis import analyze_batch_failures
    except ImportError:  # the analysis engine is not there: the ledger's counts by class
        analyze_batch_failures = None  # type: ignore[assignment]
    if analyze_batch_failures is not None:
        found = analyze_batch_failures(batch_id)
        fields = ("total_failures", "recoverable_count", "manual_count", "permanent_count")
        return {
            **{name: found.get(name) for name in fields},
            "errors_by_category": found.get("errors_by_category", {}),
        }
    from ledger.reports import failures_by_class

    with transaction() as session:
        return {"errors_by_class": failures_by_class(session, [batch_id])}


@app.task(name=TASK_NAME, ignore_result=True, acks_late=True)
def send_notification(key: str) -> str:
    """Send one recorded event to every receiver (or the log), then mark it sent."""
    settings = get_settings()
    # Long enough for every try and the backoff between them (at most 30 s each).
    tries = settings.batch_notify_max_attempts
    lease = tries * settings.batch_notify_timeout_seconds + (tries - 1) * 30 + 5
    with transaction() as session:
        recorded = claim_event(session, key, lease)
    if recorded is None:
        return "skipped"  # sent already, or another sender holds it
    message = envelope(recorded, {**recorded.get("data", {}), **_details_safe(recorded)})
    try:
        _deliver(message)
    except Exception:
        with transaction() as session:
            release_event(session, key)
        raise
    with transaction() as session:
        mark_sent(session, key)
    return "sent"


def _details_safe(recorded: dict[str, Any]) -> dict[str, Any]:
    try:
        return _details(str(recorded["batch_id"]), str(recorded["kind"]))
    except Exception as error:
        log.warning("notify.details_unavailable", key=recorded.get("event_id"), error=str(error))
        return {}


def _deliver(message: dict[str, Any]) -> None:
    settings = get_settings()
    urls = settings.notify_urls()
    if not urls:
        level = log.critical if message["emergency"] else log.info
        level("notify.event", **message)
        return
    body = body_bytes(message)
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(body, settings.batch_notify_secret or ""),
        "X-Batchline-Event": str(message["kind"]),
        "Idempotency-Key": str(message["event_id"]),
    }
    with httpx.Client(timeout=settings.batch_notify_timeout_seconds) as client:
        for url in urls:
            _post_with_retries(client, url, body, headers, settings.batch_notify_max_attempts)
    log.info("notify.sent", kind=message["kind"], batch_id=message["batch_id"], receivers=len(urls))


def _post_with_retries(
    client: httpx.Client, url: str, body: bytes, headers: dict[str, str], attempts: int
) -> None:
    retrying = Retrying(
        stop=stop_after_attempt(attempts),
        wait=wait_random_exponential(multiplier=0.5, max=30),  # jitter: receivers recover in peace
        retry=retry_if_exception_type((ReceiverError, httpx.TransportError)),
        reraise=True,
    )
    for attempt in retrying:
        with attempt:
            response = client.post(url, content=body, headers=headers)
            if response.status_code >= 500 or response.status_code in (408, 429):
                raise ReceiverError(f"{url} answered {response.status_code}")
            if response.status_code >= 300:
                # A 4xx will not change on retry: log it and count the event as handed over.
                log.warning("notify.refused", url=url, status=response.status_code)
