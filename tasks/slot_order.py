"""Strict lane order at the concurrency slots: a waiting higher-lane item takes the next one.

An item of an I/O-bound stage that finds its slots taken polls for them for up to
``BATCH_SLOT_WAIT_SECONDS`` (``ChunkRun.take``). Whoever polled first after a
release used to win, so a low item already waiting at a customer's slots took the
slot a high item of the same customer had arrived for a moment later, and the
feed surplus (``BATCH_FEED_SURPLUS``) keeps low items waiting there all the time.

So an item that waits registers in its lane's set of waiters (``slot_waiters_key``)
with the semaphores it needs, and an item of a lower lane takes no slot in a
semaphore a higher-lane item waits for: it keeps polling (or goes back to the
pool when its wait is over) while the higher item takes the next free one. An
entry expires at its give-up time, so a waiter that died blocks nobody for long.
The semaphores' script reads the sets of the lanes above (:func:`blockers`) in the
same call that takes the slots, so standing back costs no round trip of its own.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis
import structlog

from metrics.keys import slot_waiters_key
from pipeline.lanes import PRIORITIES
from tasks.limits.semaphore import SlotClaim, waiter_member

log = structlog.get_logger(__name__)


def lanes_above(lane: str) -> tuple[str, ...]:
    """The lanes whose waiting items come before ``lane``'s at the slots."""
    return PRIORITIES[: PRIORITIES.index(lane)] if lane in PRIORITIES else ()


def blockers(lane: str) -> tuple[str, ...]:
    """The waiter sets an item of ``lane`` stands back for: those of the lanes above.

    The semaphores' script reads them in the same call that takes the slots
    (``tasks.limits.semaphore.acquire``), so standing back costs no round trip.
    """
    return tuple(slot_waiters_key(higher) for higher in lanes_above(lane))


@contextmanager
def waiting(client: redis.Redis, lane: str, claim: SlotClaim, seconds: float) -> Iterator[None]:
    """Register ``claim`` as waiting in ``lane`` for up to ``seconds`` while the block runs.

    Only lanes that have a lane below them register: nobody yields to the lowest.
    """
    key, member = slot_waiters_key(lane), waiter_member(claim)
    registered = lane in PRIORITIES[:-1] and bool(claim.capped())
    if registered:
        now = time.time()
        try:
            pipe = client.pipeline(transaction=False)
            pipe.zremrangebyscore(key, "-inf", now)  # those who gave up without leaving
            pipe.zadd(key, {member: now + seconds + 1.0})
            pipe.expire(key, int(seconds) + 5)  # the set goes with its last waiter
            pipe.execute()
        except redis.RedisError as error:
            log.warning("slots.wait_unregistered", error=str(error))
            registered = False
    try:
        yield
    finally:
        if registered:
            with contextlib.suppress(redis.RedisError):  # else its score expires it
                client.zrem(key, member)
