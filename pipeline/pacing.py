"""Pace calls to an external service by a shared token bucket (``BATCH_RATE_LIMITS``)."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Final

from pipeline.errors import RateLimited
from pipeline.limits import CallGate, RateGate
from pipeline.wait_tally import note_wait

#: How often a call waiting for a ``conc=N`` slot asks again. Slots free when other
#: calls end, which no bucket can predict, so this is a short poll (one script each).
SLOT_POLL_SECONDS: Final = 0.05

#: A call's slot lease is its timeout plus this: long enough for any call that
#: keeps to its timeout, short enough that a dead worker's slot soon comes back.
CALL_LEASE_MARGIN_SECONDS: Final = 30.0


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
    try:
        while (wait := gate.wait_seconds(service, key)) > 0:
            if waited + wait > max_wait:
                raise _limited(service, wait)
            sleep(wait)
            waited += wait
    finally:
        note_wait("rate", waited)  # the batch report's time waiting for rate limits


@contextmanager
def paced(
    gate: CallGate,
    service: str,
    key: str = "",
    *,
    max_wait: float,
    lease_seconds: float,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[None]:
    """Run the block as one call of ``service``: a concurrency slot, then a token.

    The slot (``conc=N``) is held for the block and given back after it, whatever
    it raised; a worker that dies inside the block loses its slot when the lease
    ends. The slot comes first so a call that cannot get one spends no token: a
    token of a daily quota (``N/day``) is a unit the provider bills. The token is
    then taken as :func:`pace` does (its short waits hold the slot).

    Raises:
        RateLimited: the slot or the token would take longer than ``max_wait``
            (the slot is given back then); the pipeline defers the item.
    """
    holder = f"{os.getpid()}:{uuid.uuid4().hex}"
    waited = 0.0
    try:
        while not gate.hold(service, key, holder, lease_seconds):
            if waited + SLOT_POLL_SECONDS > max_wait:
                raise _limited(service, SLOT_POLL_SECONDS, what="concurrency bound (conc=N)")
            sleep(SLOT_POLL_SECONDS)
            waited += SLOT_POLL_SECONDS
    finally:
        note_wait("slot", waited)  # the batch report's time waiting for call slots
    try:
        pace(gate, service, key, max_wait=max(0.0, max_wait - waited), sleep=sleep)
        yield
    finally:
        gate.release(service, key, holder)


def _limited(service: str, wait: float, what: str = "rate limit") -> RateLimited:
    return RateLimited(
        f"{service} {what} (BATCH_RATE_LIMITS) reached; next call in {wait:.1f}s",
        retry_after=wait,
        code=f"{service}_rate_gate",
    )
