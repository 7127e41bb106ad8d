"""Rate limits of external services: the ``BATCH_RATE_LIMITS`` format and the gate seam.

``BATCH_RATE_LIMITS`` holds comma-separated entries
``service=RATE/UNIT[:BURST][:per-key]``, e.g. ``writer=60/min:20,delivery=10/s:30:per-key``.
UNIT is one of ``s``, ``sec``, ``min``, ``h``, ``hour``; BURST (the bucket size)
defaults to 1; ``per-key`` gives each key (e.g. each publisher domain) a bucket
of its own instead of one bucket for the whole service.

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
_SERVICE: Final = re.compile(r"[a-z][a-z0-9_-]*")
_PER_KEY: Final = "per-key"
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


class NoRateGate:
    """A gate that never waits: no limits configured, or pure unit tests."""

    def wait_seconds(self, service: str, key: str = "") -> float:
        """Always 0.0: go now."""
        return 0.0


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


def _parse_entry(entry: str) -> tuple[str, RateSpec]:
    service, equals, value = (part.strip() for part in entry.partition("="))
    if not equals:
        raise _error(entry, "expected service=RATE/UNIT[:BURST][:per-key]")
    if not _SERVICE.fullmatch(service):
        raise _error(entry, "service must match [a-z][a-z0-9_-]*")
    rate, *options = (part.strip() for part in value.split(":"))
    per_key = bool(options) and options[-1] == _PER_KEY
    if per_key:
        options.pop()
    if len(options) > 1:
        raise _error(entry, "expected at most BURST and per-key after the rate")
    burst = _parse_burst(entry, options[0]) if options else 1
    return service, RateSpec(_parse_rate(entry, rate), burst, per_key)


def _parse_rate(entry: str, rate: str) -> float:
    amount, slash, unit = (part.strip() for part in rate.partition("/"))
    if not slash:
        raise _error(entry, "rate must be RATE/UNIT, e.g. 60/min")
    if unit not in _PER_MINUTE:
        raise _error(entry, f"unknown unit {unit!r} (use one of {', '.join(_PER_MINUTE)})")
    try:
        count = float(amount)
    except ValueError:
        raise _error(entry, f"rate {amount!r} is not a number") from None
    if not math.isfinite(count) or count <= 0:
        raise _error(entry, "rate must be positive")
    return count * _PER_MINUTE[unit]


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
