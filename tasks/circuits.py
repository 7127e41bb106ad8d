"""The circuit breakers as one chunk sees them: hold items bound for an open circuit.

The chunk runner asks :class:`ChunkCircuits` before each item's call (``hold``)
and tells it how the call went (``succeeded`` / ``failed``). An item whose
circuit is open becomes a :class:`Deferred` outcome: the runner leases it to the
circuit until the cool-down ends, with its attempt given back, and the
sweeper's ``return_to_pool`` puts it back in the pool afterwards. So a waiting
order waits in the ledger, not in Redis or as a Celery countdown.

The rules are ``pipeline.breaker``'s, kept in Redis by ``tasks.limits.breaker``.
Opening and closing a circuit is logged and written to the event log. If Redis
cannot answer, the breaker steps aside (calls go through): a breaker outage
must never stop the pipeline.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import redis
import structlog

from ledger.batches import add_event
from ledger.db import transaction
from ledger.items import ClaimedItem
from metrics.redis_client import redis_client
from pipeline.breaker import (
    WRITER_CIRCUIT,
    BreakerPolicy,
    CircuitView,
    counts_against,
    publisher_circuit,
)
from pipeline.classify import categorize
from pipeline.outcomes import Deferred
from pipeline.settings import get_settings
from pipeline.stage_registry import Stage
from tasks.infrastructure import INFRASTRUCTURE_ERRORS
from tasks.limits.breaker import RedisBreaker

log = structlog.get_logger(__name__)
#: What the breaker's Redis calls may raise; the call then goes through unguarded.
_BREAKER_ERRORS: tuple[type[BaseException], ...] = (redis.RedisError,)


@lru_cache(maxsize=1)
def breaker() -> RedisBreaker:
    """This process's view of the shared circuits (``BREAKER_*`` settings)."""
    settings = get_settings()
    policy = BreakerPolicy(
        failures=settings.breaker_failures,
        window=settings.breaker_window_seconds,
        cooldown=settings.breaker_cooldown_seconds,
    )
    return RedisBreaker(redis_client, policy)


def circuit_of(stage: Stage, item: ClaimedItem) -> str | None:
    """The circuit an item of ``stage`` calls through (None: the stage calls nobody)."""
    if stage.circuit == "publisher":
        return publisher_circuit(item.publisher_domain)
    return WRITER_CIRCUIT if stage.circuit == "writer" else None


@dataclass
class ChunkCircuits:
    """One chunk's dealings with the breakers; safe to share between its item threads.

    A circuit found closed is not asked again for the rest of the chunk (one Redis
    call per circuit and chunk while all is well); one found open holds every
    later item bound for it without asking. A success is reported once per circuit
    and chunk, and again only after a failure: it resets the consecutive-failure
    count, which one report does as well as five hundred.
    """

    _closed: set[str] = field(default_factory=set)
    _reported: set[str] = field(default_factory=set)
    _open: dict[str, float] = field(default_factory=dict)
    _probes: set[int] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def hold(self, stage: Stage, item: ClaimedItem, batch_id: str) -> Deferred | None:
        """Deferred if ``item``'s circuit is open (or its probe is out), else None: go."""
        circuit = circuit_of(stage, item)
        if circuit is None:
            return None
        with self._lock:
            if circuit in self._closed:
                return None
            until = self._open.get(circuit)
        if until is not None:
            return _deferred(item, circuit, until)
        try:
            admission = breaker().admit(circuit)
        except _BREAKER_ERRORS as error:
            log.warning("circuit.unavailable", circuit=circuit, error=str(error))
            return None
        if admission.probe:
            log.info("circuit.probe", circuit=circuit, item_id=item.item_id, batch_id=batch_id)
            with self._lock:
                self._probes.add(item.item_id)
            return None
        with self._lock:
            if admission.allowed:
                self._closed.add(circuit)
                return None
            self._open[circuit] = admission.retry_at
        return _deferred(item, circuit, admission.retry_at)

    def succeeded(self, stage: Stage, item: ClaimedItem, batch_id: str) -> None:
        """The item's call went through: its circuit's failure count starts again."""
        circuit = circuit_of(stage, item)
        if circuit is None:
            return
        with self._lock:
            if circuit in self._reported:
                return
            self._reported.add(circuit)
        try:
            before = breaker().success(circuit)
        except _BREAKER_ERRORS as error:
            log.warning("circuit.unavailable", circuit=circuit, error=str(error))
            return
        if before.open_until:
            _announce("circuit_closed", circuit, batch_id, {"after_failures": before.failures})

    def failed(
        self, stage: Stage, item: ClaimedItem, batch_id: str, error: BaseException
    ) -> Deferred | None:
        """Count a transient failure; Deferred if the circuit is (now) open, else None.

        A failure that opens the circuit, or that happens while it is open (the
        probe's), is the service's, not the order's: the item waits without
        spending its attempt. Earlier failures take the ordinary retry path.
        """
        circuit = circuit_of(stage, item)
        if circuit is None or not counts_against(categorize(error)):
            return None
        with self._lock:
            self._reported.discard(circuit)  # the next success resets the count again
        try:
            view = breaker().failure(circuit)
        except _BREAKER_ERRORS as failure:
            log.warning("circuit.unavailable", circuit=circuit, error=str(failure))
            return None
        if not view.open_until:
            return None
        with self._lock:
            self._closed.discard(circuit)
            self._open[circuit] = view.open_until
            probe = item.item_id in self._probes
        # Only the call that crossed the threshold (the count is atomic: one caller
        # sees it) and a failed probe change the state; late calls only extend it.
        if view.failures == breaker().policy.failures or probe:
            _announce("circuit_opened", circuit, batch_id, _opened_data(view, error, probe))
        return _deferred(item, circuit, view.open_until)


def _deferred(item: ClaimedItem, circuit: str, until: float) -> Deferred:
    return Deferred(item.item_id, circuit, until, f"circuit {circuit} is open")


def _opened_data(view: CircuitView, error: BaseException, probe: bool) -> dict[str, Any]:
    return {
        "failures": view.failures,
        "open_until": datetime.fromtimestamp(view.open_until, UTC).isoformat(),
        "probe_failed": probe,
        "error": str(error)[:300],
    }


def _announce(kind: str, circuit: str, batch_id: str, data: dict[str, Any]) -> None:
    """Log a circuit's change and write it to the event log (never failing the chunk)."""
    log.warning(kind.replace("_", "."), circuit=circuit, batch_id=batch_id, **data)
    try:
        with transaction() as session:
            add_event(session, batch_id=batch_id, kind=kind, data={"circuit": circuit, **data})
    except INFRASTRUCTURE_ERRORS as error:
        log.warning("circuit.event_unrecorded", circuit=circuit, error=str(error))


def seconds_until(moment: float) -> float:
    """Seconds from now until ``moment`` (epoch seconds), at least one."""
    return max(1.0, moment - time.time())
