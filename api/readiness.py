"""What ``/readyz`` checks: Redis, the ledger, its migrations, a worker on each lane, no halt.

Workers are asked which queues they consume (one broadcast, answered within a
second), at most every :data:`INSPECT_EVERY` seconds; a lane counts as served while
a worker was seen on it within ``API_READY_WORKER_SECONDS``.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Final

from sqlalchemy import text

from cli.workers import ALL_LANES, queues_for
from ledger.controls import halt_reason
from ledger.db import transaction
from ledger.migrate import current_revision, head_revision
from metrics.redis_client import redis_client
from pipeline.settings import get_settings

#: Every queue some worker must consume, as named in answers (``batch.`` dropped): each
#: lane, and each work lane's I/O queue (writing and delivery chunks wait there).
_SERVED: Final = tuple(
    q.removeprefix("batch.") for lane in ALL_LANES for q in queues_for([lane]).split(",")
)
#: Seconds between two broadcasts asking workers for their queues.
INSPECT_EVERY: Final = 5.0


class LaneSightings:
    """When a worker consuming each lane last answered (per API process)."""

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}
        self._asked = 0.0
        self._lock = threading.Lock()

    def unserved(self, within: float) -> list[str]:
        """The lanes no worker was seen consuming within ``within`` seconds."""
        with self._lock:
            if time.monotonic() - self._asked >= INSPECT_EVERY:
                self._asked = time.monotonic()
                self._ask()
            now = time.monotonic()
            return [q for q in _SERVED if now - self._seen.get(q, -1e9) > within]

    def _ask(self) -> None:
        from celery_app import app

        answers = app.control.inspect(timeout=1.0).active_queues() or {}
        now = time.monotonic()
        for queues in answers.values():
            for queue in queues:
                self._seen[str(queue["name"]).removeprefix("batch.")] = now


def readiness(lanes: LaneSightings) -> dict[str, Any]:
    """Every check's result (True, or what is wrong) and ``ready`` when all passed."""
    checks: dict[str, Any] = {}
    for name, check in (("redis", _redis), ("ledger", _ledger), ("migrations", _migrations)):
        try:
            checks[name] = check()
        except Exception as error:  # a check that fails is the answer, not an error
            checks[name] = f"{type(error).__name__}: {error}"[:200]
    if checks["ledger"] is True:
        checks["halt"] = _not_halted()
    if checks["redis"] is True:
        missing = lanes.unserved(get_settings().api_ready_worker_seconds)
        checks["workers"] = True if not missing else f"no worker seen on: {', '.join(missing)}"
    return {"ready": all(value is True for value in checks.values()), "checks": checks}


def _redis() -> bool:
    return bool(redis_client().ping())


def _ledger() -> bool:
    with transaction() as session:
        session.execute(text("SELECT 1"))
    return True


def _migrations() -> bool | str:
    url = get_settings().require_database_url()
    current, head = current_revision(url), head_revision()
    return True if current == head else f"ledger at {current}, code at {head}"


def _not_halted() -> bool | str:
    with transaction() as session:
        reason = halt_reason(session)
    return True if reason is None else f"halted: {reason}"
