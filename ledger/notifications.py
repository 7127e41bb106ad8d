"""The notification outbox: rows of ``idempotency_keys`` (scope ``notify``), one per (batch, kind).

The primary key makes an event exist at most once per (batch, kind), however
often it is recorded; the row is written in the transaction of whatever caused
it (a finalize, a halt) or in its own. ``sent_at`` marks it delivered;
``sending_until`` is the lease of the task sending it, so a sender that dies
leaves it for the sweeper to send again; ``queued_until`` marks an event the
sweeper has just queued again, so the sweeps after it do not queue it once more
while its message waits (a backlog of unsent events would otherwise be queued
again every sweep). The caller owns the transaction.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any, Final

from sqlalchemy import text
from sqlalchemy.orm import Session

SCOPE: Final = "notify"
#: The rows still to send; the partial index ``ix_idempotency_keys_notify_unsent``
#: (ledger/models.py) is built on this predicate, so the queries below that use it
#: word for word are served by the index.
UNSENT_SQL: Final = f"scope = '{SCOPE}' AND (result ->> 'sent_at') IS NULL"
#: An outbox row outlives its sending by this long (then the sweeper's TTL cleanup drops it).
KEEP_DAYS: Final = 30


def event_key(batch_id: str, kind: str) -> str:
    """The outbox key of (batch, kind); hashed, since a batch id may use the column's width."""
    digest = hashlib.sha256(f"{batch_id}\x00{kind}".encode()).hexdigest()
    return f"{SCOPE}:{digest}"


_RECORD = text(
    f"""
    INSERT INTO idempotency_keys (key, scope, result, expires_at)
    VALUES (:key, '{SCOPE}', CAST(:event AS jsonb) || jsonb_build_object('created_at', now()),
            now() + interval '{KEEP_DAYS} days')
    ON CONFLICT (key) DO NOTHING
    RETURNING key
    """
)


def record_event(
    session: Session, *, batch_id: str, kind: str, data: dict[str, Any], emergency: bool
) -> str | None:
    """Put (batch, kind) in the outbox; return its key, or None if it was there already."""
    key = event_key(batch_id, kind)
    event = {
        "event_id": str(uuid.uuid4()),
        "batch_id": batch_id,
        "kind": kind,
        "emergency": emergency,
        "data": data,
        "sent_at": None,
        "sending_until": None,
    }
    inserted = session.scalar(_RECORD, {"key": key, "event": json.dumps(event)})
    return None if inserted is None else key


_CLAIM = text(
    f"""
    UPDATE idempotency_keys
    SET result = (result - 'queued_until')
                 || jsonb_build_object('sending_until', now() + make_interval(secs => :lease))
    WHERE key = :key AND scope = '{SCOPE}' AND result->>'sent_at' IS NULL
      AND (result->>'sending_until' IS NULL OR (result->>'sending_until')::timestamptz < now())
    RETURNING result
    """
)


def claim_event(session: Session, key: str, lease_seconds: float) -> dict[str, Any] | None:
    """Lease an unsent event to this sender; None if it is sent or another sender holds it."""
    row = session.scalar(_CLAIM, {"key": key, "lease": lease_seconds})
    return dict(row) if row is not None else None


def mark_sent(session: Session, key: str) -> None:
    """The event reached every receiver (or the log): never send it again."""
    session.execute(
        text(
            "UPDATE idempotency_keys SET result = jsonb_set(result, '{sent_at}', to_jsonb(now()))"
            " WHERE key = :key"
        ),
        {"key": key},
    )


def release_event(session: Session, key: str) -> None:
    """Give up the lease after a failed send, so the sweeper's next pass sends it again."""
    session.execute(
        text(
            "UPDATE idempotency_keys"
            " SET result = (result - 'queued_until') || '{\"sending_until\": null}'::jsonb"
            " WHERE key = :key AND result->>'sent_at' IS NULL"
        ),
        {"key": key},
    )


_QUEUE_UNSENT = text(
    f"""
    UPDATE idempotency_keys
    SET result = jsonb_set(result, '{{queued_until}}',
                           to_jsonb(now() + make_interval(secs => :requeue)))
    WHERE key IN (
        SELECT key FROM idempotency_keys
        WHERE {UNSENT_SQL}
          AND created_at < now() - make_interval(secs => :grace)
          AND (result->>'sending_until' IS NULL
               OR (result->>'sending_until')::timestamptz < now())
          AND (result->>'queued_until' IS NULL
               OR (result->>'queued_until')::timestamptz < now())
        ORDER BY created_at LIMIT :limit
        FOR UPDATE SKIP LOCKED
    )
    RETURNING key
    """
)


def queue_unsent_events(
    session: Session, *, grace_seconds: float, requeue_seconds: float, limit: int = 500
) -> list[str]:
    """Take the events nobody sent, is sending or has queued, recorded over ``grace_seconds`` ago.

    Each is marked queued for ``requeue_seconds``: the caller queues one message
    per key, and the next sweeps leave the key alone until a sender claims it
    (which clears the mark) or the mark runs out (its message was lost). Without
    the mark a backlog of unsent events was queued again every sweep, and an
    event recorded after the first ``limit`` unsent ones waited behind them all.
    """
    params = {"grace": grace_seconds, "requeue": requeue_seconds, "limit": limit}
    return [str(key) for key in session.scalars(_QUEUE_UNSENT, params)]


_UNSENT_SUMMARY = text(
    f"""
    SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)
    FROM idempotency_keys WHERE {UNSENT_SQL}
    """
)


def unsent_summary(session: Session) -> tuple[int, float]:
    """How many events wait unsent, and how long the oldest has waited (seconds; 0 if none)."""
    count, oldest = session.execute(_UNSENT_SUMMARY).one()
    return int(count), max(0.0, float(oldest))


def sent_at(session: Session, batch_id: str, kind: str) -> str | None:
    """When (batch, kind) was sent, if it was (for tests and operators)."""
    row = session.scalar(
        text("SELECT result->>'sent_at' FROM idempotency_keys WHERE key = :key"),
        {"key": event_key(batch_id, kind)},
    )
    return None if row is None else str(row)
