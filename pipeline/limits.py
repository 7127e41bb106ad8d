"""Rate limits of external services: the ``BATCH_RATE_LIMITS`` format and the gate seam.

``BATCH_RATE_LIMITS`` holds comma-separated entries
``service=RATE/UNIT[:BURST][:conc=N][:per-key]`` (the options in that order), e.g.
``writer=60/min:20,delivery=10/s:30:per-key,ahrefs=5000/day:conc=5``.

* ``RATE/UNIT`` with UNIT one of ``s``, ``sec``, ``min``, ``h``, ``hour``: a token
  bucket refilled at RATE per UNIT; BURST (the bucket size) defaults to 1.
* ``RATE/day`` (or ``/d``): a quota of RATE calls (a whole number) per UTC calendar
  day, a fixed window that starts afresh at 00:00 UTC, as providers count their
  daily quotas; once spent, calls wait for the next day. BURST does not apply.
* ``conc=N``: at most N calls of the service in flight at once, across all workers
  (a leased slot held during each call).
* ``per-key`` gives each key (e.g. each publisher domain) a bucket, quota and
  ``conc`` bound of its own instead of one for the whole service.

Pure: the Redis token bucket behind :class:`RateGate` lives in ``tasks.limits.rate``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Final, Protocol

#: Tokens per minute that one token per UNIT is worth.
_PER_MINUTE: Final[dict[str, float]] = {
    "s": 60.0,
    "sec": 60.0,
    "min": 1.0,
    "h": 1 / 60,
    "hour": 1 / 60,
}
#: Units of a fixed daily quota rather than a token bucket.
_DAILY_UNITS: Final = ("day", "d")
_SERVICE: Final = re.compile(r"[a-z][a-z0-9_-]*")
_PER_KEY: Final = "per-key"
_CONC: Final = "conc="
_SYNTAX: Final = "service=RATE/UNIT[:BURST][:conc=N][:per-key]"
_ENV_NAME: Final = "BATCH_RATE_LIMITS"


@dataclass(frozen=True)
class RateSpec:
    """The limit of one service."""

    #: sustained rate, in tokens per minute
    per_minute: float
    #: bucket size: how many calls may go at once after a quiet spell
    burst: int
    #: True when each key (e.g. publisher domain) has its own bucket, else one per service
    per_key: bool
    #: calls allowed in flight at once (``conc=N``); 0 means no bound
    concurrency: int = 0
    #: calls allowed per UTC day (``N/day``), a fixed window; 0 means a token bucket instead
    per_day: int = 0

    def __str__(self) -> str:
        """The spec as a ``BATCH_RATE_LIMITS`` value (parses back to an equal spec)."""
        if self.per_day:
            parts = [f"{self.per_day}/day"]
        else:
            parts = [f"{self.per_minute!r}/min", str(self.burst)]
        if self.concurrency:
            parts.append(f"{_CONC}{self.concurrency}")
        if self.per_key:
            parts.append(_PER_KEY)
        return ":".join(parts)


class RateSpecError(ValueError):
    """A ``BATCH_RATE_LIMITS`` entry that cannot be used; the message names the entry."""


class RateGate(Protocol):
    """Where a task asks whether it may call an external service now."""

    def wait_seconds(self, service: str, key: str = "") -> float:
        """Take one token for `service` (and `key` when that service is limited per key).

        Returns:
            0.0 to go now, else seconds until a token is free (nothing was taken).
        """
        ...


class CallGate(RateGate, Protocol):
    """A rate gate that also bounds how many calls of a service are in flight (``conc=N``)."""

    def hold(self, service: str, key: str, holder: str, lease_seconds: float) -> bool:
        """Take a concurrency slot of `service` (per `key` when limited per key) for `holder`.

        The slot is leased: if its holder dies without :meth:`release`, it frees
        itself after `lease_seconds`.

        Returns:
            True when taken, or when the service has no ``conc`` bound; False when full.
        """
        ...

    def release(self, service: str, key: str, holder: str) -> None:
        """Give back `holder`'s slot (nothing happens when it holds none)."""
        ...


class NoRateGate:
    """A gate that never waits: no limits configured, or pure unit tests."""

    def wait_seconds(self, service: str, key: str = "") -> float:
        """Always 0.0: go now."""
        return 0.0

    def hold(self, service: str, key: str, holder: str, lease_seconds: float) -> bool:
        """Always True: no concurrency bound."""
        return True

    def release(self, service: str, key: str, holder: str) -> None:
        """Nothing to give back."""


def parse_rate_limits(text: str) -> dict[str, RateSpec]:
    """Parse the value of ``BATCH_RATE_LIMITS`` (see the module docstring).

    Args:
        text: comma-separated entries; blank text means no limits.

    Returns:
        service name -> its spec.

    Raises:
        RateSpecError: an entry is malformed or repeats a service; the message names it.
    """
    specs: dict[str, RateSpec] = {}
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:  # blank text, or a trailing comma
            continue
        service, spec = _parse_entry(entry)
        if service in specs:
            raise _error(entry, f"service {service!r} is listed twice")
        specs[service] = spec
    return specs


def format_rate_limits(specs: dict[str, RateSpec]) -> str:
    """The ``BATCH_RATE_LIMITS`` value for `specs` (the inverse of :func:`parse_rate_limits`)."""
    return ",".join(f"{service}={spec}" for service, spec in specs.items())


def _parse_entry(entry: str) -> tuple[str, RateSpec]:
    service, equals, value = (part.strip() for part in entry.partition("="))
    if not equals:
        raise _error(entry, f"expected {_SYNTAX}")
    if not _SERVICE.fullmatch(service):
        raise _error(entry, "service must match [a-z][a-z0-9_-]*")
    rate, *options = (part.strip() for part in value.split(":"))
    per_key = bool(options) and options[-1] == _PER_KEY
    if per_key:
        options.pop()
    concurrency = 0
    if options and options[-1].startswith(_CONC):
        concurrency = _parse_concurrency(entry, options.pop()[len(_CONC) :])
    misplaced = any(o == _PER_KEY or o.startswith(_CONC) for o in options)
    if len(options) > 1 or misplaced:
        raise _error(entry, "expected at most BURST, conc=N and per-key after the rate, in order")
    amount, unit = _split_rate(entry, rate)
    if unit in _DAILY_UNITS:
        if options:
            raise _error(entry, "BURST does not apply to a daily quota (a fixed UTC-day window)")
        per_day = _parse_daily(entry, amount)
        return service, RateSpec(per_day / 1440, 1, per_key, concurrency, per_day)
    burst = _parse_burst(entry, options[0]) if options else 1
    return service, RateSpec(_parse_rate(entry, amount, unit), burst, per_key, concurrency)


def _split_rate(entry: str, rate: str) -> tuple[str, str]:
    amount, slash, unit = (part.strip() for part in rate.partition("/"))
    if not slash:
        raise _error(entry, "rate must be RATE/UNIT, e.g. 60/min")
    if unit not in _PER_MINUTE and unit not in _DAILY_UNITS:
        units = ", ".join([*_PER_MINUTE, *_DAILY_UNITS])
        raise _error(entry, f"unknown unit {unit!r} (use one of {units})")
    return amount, unit


def _parse_rate(entry: str, amount: str, unit: str) -> float:
    try:
        count = float(amount)
    except ValueError:
        raise _error(entry, f"rate {amount!r} is not a number") from None
    if not math.isfinite(count) or count <= 0:
        raise _error(entry, "rate must be positive")
    return count * _PER_MINUTE[unit]


def _parse_daily(entry: str, amount: str) -> int:
    try:
        count = int(amount)
    except ValueError:
        raise _error(entry, f"daily quota {amount!r} is not a whole number") from None
    if count < 1:
        raise _error(entry, "rate must be positive")
    return count


def _parse_concurrency(entry: str, value: str) -> int:
    try:
        count = int(value)
    except ValueError:
        raise _error(entry, f"conc {value!r} is not a whole number") from None
    if count < 1:
        raise _error(entry, "conc must be at least 1")
    return count


def _parse_burst(entry: str, burst: str) -> int:
    try:
        size = int(burst)
    except ValueError:
        raise _error(entry, f"burst {burst!r} is not a whole number") from None
    if size < 1:
        raise _error(entry, "burst must be at least 1")
    return size


def _error(entry: str, problem: str) -> RateSpecError:
    return RateSpecError(f"{_ENV_NAME} entry {entry!r}: {problem}")
