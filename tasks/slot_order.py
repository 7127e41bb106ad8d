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

Within a lane the waiters are ranked too: a release hands each slot it frees to
the best-ranked waiter (the feeder's order) that can start now, instead of
leaving it to whoever polls first (``tasks.limits.semaphore.release``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis
import structlog

from metrics.keys import slot_waiters_key, slot_wake_key
from pipeline.lanes import PRIORITIES
from tasks.limits.semaphore import SlotClaim, waiter_member

log = structlog.get_logger(__name__)

#: The shortest pause spent blocked on the wake list; a shorter one just sleeps.
MIN_BLOCK_S = 0.005


def lanes_above(lane: str) -> tuple[str, ...]:
    """The lanes whose waiting items come before ``lane``'s at the slots."""
    return PRIORITIES[: PRIORITIES.index(lane)] if lane in PRIORITIES else ()


def blockers(lane: str) -> tuple[str, ...]:
    """The waiter sets an item of ``lane`` stands back for: those of the lanes above.

    The semaphores' script reads them in the same call that takes the slots
    (``tasks.limits.semaphore.acquire``), so standing back costs no round trip.
    """
    return tuple(slot_waiters_key(higher) for higher in lanes_above(lane))


def pause_until_handed(client: redis.Redis, holder: str, seconds: float) -> bool:
    """Sleep between two polls for a slot, but wake as soon as a release hands one over.

    Returns whether a release woke it.

    The release that hands ``holder`` a slot pushes to its wake list
    (``metrics.keys.slot_wake_key``). A plain sleep left the handed slot idle until
    the waiter's next poll (50 ms on average at 100 ms pauses: E at 2 s lost 2.5 %);
    a slot left free used to go to the first of many pollers at once. An error
    sleeps the rest of the pause instead: the next poll finds the slot anyway.
    """
    if seconds < MIN_BLOCK_S:
        # Redis reads a timeout under a millisecond as 0, which blocks for good.
        time.sleep(max(0.0, seconds))
        return False
    try:
        return client.blpop([slot_wake_key(holder)], timeout=seconds) is not None
    except redis.RedisError:
        time.sleep(seconds)
        return False


def waiter_sets() -> tuple[str, ...]:
    """Every lane's waiter set, highest lane first: where a release hands its slots."""
    return tuple(slot_waiters_key(lane) for lane in PRIORITIES)


@contextmanager
def waiting(
    client: redis.Redis,
    lane: str,
    claim: SlotClaim,
    seconds: float,
    rank: tuple[float, int] = (0.0, 0),
) -> Iterator[None]:
    """Register ``claim`` as waiting in ``lane`` for up to ``seconds`` while the block runs.

    ``rank``: the item's ``(score, fair_rank)``, the feeder's order; a release hands
    its slot to the best-ranked waiter that can use it (``tasks.limits.semaphore.release``).
    """
    key, member = slot_waiters_key(lane), waiter_member(claim, rank)
    registered = bool(claim.capped())
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
