"""Circuit breakers per outside service: the state machine, pure (no Redis, no clock).

A circuit guards one thing orders call out to: the writer service (``writer``) or
one publisher's endpoint (``publisher:<domain>``). The batch guide's rule:

* **closed**: calls go through. ``BREAKER_FAILURES`` consecutive transient failures
  within ``BREAKER_WINDOW_SECONDS`` (an older first failure starts the count again)
  open it; a success resets the count.
* **open** for ``BREAKER_COOLDOWN_SECONDS``: no call goes through; orders bound for
  it wait in the ledger's pool without spending an attempt.
* **half-open** once the cool-down is over: exactly one caller gets the probe (for
  at most one cool-down); the others keep waiting. The probe's success closes the
  circuit, its failure opens it for another cool-down.

:class:`CircuitView` is what the store keeps per circuit; :func:`admit`,
:func:`after_failure` and :func:`after_success` are the transitions, given the
time. ``tasks.limits.breaker`` runs the same rules in one Redis script per call,
and :class:`MemoryBreaker` runs them in memory; ``tests/contracts`` holds both to
one table.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Final

from pipeline.errors import ErrorCategory

#: The circuit of the writer service (one for every worker).
WRITER_CIRCUIT: Final = "writer"


class CircuitState(StrEnum):
    """Where a circuit is, as an operator sees it."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class BreakerPolicy:
    """``BREAKER_FAILURES``, ``BREAKER_WINDOW_SECONDS`` and ``BREAKER_COOLDOWN_SECONDS``."""

    failures: int = 5
    window: float = 60.0
    cooldown: float = 30.0


@dataclass(frozen=True)
class CircuitView:
    """A circuit's stored state; times are seconds on the store's clock (0: unset)."""

    failures: int = 0
    first_failure_at: float = 0.0
    open_until: float = 0.0
    #: while a probe runs, nobody else gets one before this moment
    probe_until: float = 0.0

    def state(self, now: float) -> CircuitState:
        """Closed, open (cooling down) or half-open (a probe may go, or is on its way)."""
        if not self.open_until:
            return CircuitState.CLOSED
        return CircuitState.OPEN if now < self.open_until else CircuitState.HALF_OPEN


CLOSED: Final = CircuitView()


@dataclass(frozen=True)
class Admission:
    """The answer to "may this call go now?"; ``retry_at`` says when to ask again."""

    allowed: bool
    probe: bool = False
    retry_at: float = 0.0


def admit(view: CircuitView, now: float, policy: BreakerPolicy) -> tuple[Admission, CircuitView]:
    """Decide whether one call may go, and the view after the decision.

    A closed circuit lets everything through. An open one refuses until its
    cool-down ends. Half-open, the first caller becomes the probe (holding it for
    one cool-down, so a prober that dies does not block the circuit for ever);
    later callers are refused until the probe's hold ends.
    """
    state = view.state(now)
    if state is CircuitState.CLOSED:
        return Admission(True), view
    if state is CircuitState.OPEN:
        return Admission(False, retry_at=view.open_until), view
    if now < view.probe_until:
        return Admission(False, retry_at=view.probe_until), view
    probing = replace(view, probe_until=now + policy.cooldown)
    return Admission(True, probe=True), probing


def after_failure(view: CircuitView, now: float, policy: BreakerPolicy) -> CircuitView:
    """Count one transient failure; open the circuit when the policy says so.

    A failure while half-open (the probe's) opens it for another cool-down at once.
    """
    if view.state(now) is not CircuitState.CLOSED:
        return CircuitView(view.failures + 1, view.first_failure_at, now + policy.cooldown)
    fresh = not view.failures or now - view.first_failure_at > policy.window
    failures, first = (1, now) if fresh else (view.failures + 1, view.first_failure_at)
    open_until = now + policy.cooldown if failures >= policy.failures else 0.0
    return CircuitView(failures, first, open_until)


def after_success(view: CircuitView) -> CircuitView:
    """A call went through: the count starts again and the circuit closes."""
    return CLOSED


def counts_against(category: ErrorCategory) -> bool:
    """Whether a failure of this category counts towards opening a circuit.

    Only transient failures (timeouts, 5xx, dropped connections) say the service
    is down; a rate limit has its own pacing, and configuration or data errors are
    the order's or an operator's business, not the service's health.
    """
    return category is ErrorCategory.TRANSIENT


def publisher_circuit(domain: str) -> str:
    """The circuit of one publisher's endpoint: ``publisher:<domain>``."""
    return f"publisher:{domain}"


class MemoryBreaker:
    """The breaker rules over a dict, for one process (tests, and the contract's reference)."""

    def __init__(self, policy: BreakerPolicy) -> None:
        self.policy = policy
        self._views: dict[str, CircuitView] = {}

    def view(self, circuit: str) -> CircuitView:
        """The stored state of ``circuit`` (closed if unknown)."""
        return self._views.get(circuit, CLOSED)

    def admit(self, circuit: str, now: float) -> Admission:
        """May a call to ``circuit`` go at ``now``?"""
        admission, self._views[circuit] = admit(self.view(circuit), now, self.policy)
        return admission

    def failure(self, circuit: str, now: float) -> CircuitView:
        """Record a transient failure; return the new state."""
        self._views[circuit] = after_failure(self.view(circuit), now, self.policy)
        return self._views[circuit]

    def success(self, circuit: str, now: float) -> CircuitView:
        """Record a success; return the new (closed) state."""
        self._views.pop(circuit, None)
        return CLOSED
