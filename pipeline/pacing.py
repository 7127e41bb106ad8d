"""Pace calls to an external service by a shared token bucket (``BATCH_RATE_LIMITS``)."""

from __future__ import annotations

import time
from collections.abc import Callable

from pipeline.errors import RateLimited
from pipeline.limits import RateGate


def pace(
    gate: RateGate,
    service: str,
    key: str = "",
    *,
    max_wait: float,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Return once a token of ``service`` (per ``key``) is taken; sleep for short waits.

    A wait beyond ``max_wait`` in total raises :class:`RateLimited` instead, so
    the pipeline defers the item (without spending its retry budget) rather than
    hold a worker idle: the bucket says exactly how long, so nothing polls.
    """
    waited = 0.0
    while (wait := gate.wait_seconds(service, key)) > 0:
        if waited + wait > max_wait:
            raise RateLimited(
                f"{service} rate limit (BATCH_RATE_LIMITS) reached; next call in {wait:.1f}s",
                retry_after=wait,
                code=f"{service}_rate_gate",
            )
        sleep(wait)
        waited += wait
