"""Notifications: the event kinds, the signed JSON envelope, and the progress milestones. Pure.

A receiver gets ``POST`` with the envelope as its body and the headers
``X-Batchline-Signature: sha256=<hex>`` (HMAC-SHA256 of the exact body bytes
under ``BATCH_NOTIFY_SECRET``), ``X-Batchline-Event`` (the kind) and
``Idempotency-Key`` (the event id, the same on every resend). To verify, compute
the HMAC over the raw body before parsing it and compare in constant time
(:func:`verify`); drop an event id already seen.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any, Final

FINALIZED: Final = "finalized"
RECOVERY_STARTED: Final = "recovery_started"
RECOVERY_FINISHED: Final = "recovery_finished"
HALTED: Final = "halted"
MILESTONES: Final[tuple[int, ...]] = (25, 50, 75, 100)
SIGNATURE_HEADER: Final = "X-Batchline-Signature"


def progress_kind(percent: int) -> str:
    """The kind of a progress milestone: ``progress_25`` ... ``progress_100``."""
    return f"progress_{percent}"


KINDS: Final = frozenset(
    {FINALIZED, RECOVERY_STARTED, RECOVERY_FINISHED, HALTED}
    | {progress_kind(m) for m in MILESTONES}
)


def envelope(event: Mapping[str, Any], data: Mapping[str, Any]) -> dict[str, Any]:
    """The body of a notification: the recorded event and the data gathered to send it."""
    return {
        "event_id": event["event_id"],
        "kind": event["kind"],
        "batch_id": event["batch_id"],
        "emergency": bool(event.get("emergency", False)),
        "created_at": event["created_at"],
        "data": dict(data),
    }


def body_bytes(message: Mapping[str, Any]) -> bytes:
    """The exact bytes sent (and signed): compact JSON with sorted keys."""
    return json.dumps(message, sort_keys=True, separators=(",", ":")).encode("utf-8")


def sign(body: bytes, secret: str) -> str:
    """The signature header's value: ``sha256=`` and the hex HMAC-SHA256 of ``body``."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: str, signature: str) -> bool:
    """Whether ``signature`` (the header's value) signs ``body`` under ``secret``."""
    return hmac.compare_digest(sign(body, secret), signature)


def milestones_crossed(before: int, after: int, total: int) -> list[int]:
    """Milestones (percent of orders ended) passed when ``before`` ended orders became ``after``.

    Integer arithmetic, so 100 % is reached exactly when the last order ends.
    """
    if total <= 0:
        return []
    return [m for m in MILESTONES if before * 100 < m * total <= after * 100]
