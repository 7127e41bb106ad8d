"""Feed the lanes while a chunk still runs, when its calls give their slots back.

The feeder runs after every committed chunk. A chunk of an I/O-bound stage ends
with its slowest call (latency jitter), so the slots its faster calls gave back
would stay idle until then, and during its commit. Feeding soon after a call
gives its slot back keeps the writer's slots busy.

The feed is trailing: the first call to end schedules one feed
``REFILL_INTERVAL_S`` later, and every call that ends before it runs joins it.
Calls that end together (a wave of equal latencies) thus go out as one chunk per
batch, not one thin chunk per call, each of which would hold an I/O thread; and
no call's slot is left for the chunk's commit-time feed (the earlier leading
refill dropped the calls that ended within the interval after a feed: in the
fairness benchmark their slots then waited seconds, see bench/NOTES.md). At most
one feed per interval per process, so the ledger pays a few queries a second.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Final

import redis
import structlog

from pipeline.lanes import PRIORITIES
from tasks.feeder import feed_lanes
from tasks.infrastructure import INFRASTRUCTURE_ERRORS

log = structlog.get_logger(__name__)

#: What a feed may meet; the chunk's own feed and the sweeper follow anyway.
REFILL_ERRORS: tuple[type[BaseException], ...] = (redis.RedisError, *INFRASTRUCTURE_ERRORS)
#: Only a call at least this long refills: after quick calls the chunk ends (and feeds)
#: soon anyway, and in CPU-bound runs the extra feeds only cost (bench D was ~30 % slower).
REFILL_AFTER_CALLS_OF_S: Final = 0.5
#: How long a scheduled refill waits for the calls that end with the first one.
REFILL_INTERVAL_S: Final = 0.25

_lock = threading.Lock()
_pending = False


def _schedule(delay: float, run: Callable[[], None]) -> None:
    timer = threading.Timer(delay, run)
    timer.daemon = True  # a pending refill never keeps a stopping worker alive
    timer.start()


def refill_after_call() -> None:
    """Feed every lane, high first, ``REFILL_INTERVAL_S`` from now, unless one is pending.

    Returns at once (the feed runs in a timer thread). Never raises for an
    outage: the chunk's own feed and the sweeper follow anyway.
    """
    global _pending
    with _lock:
        if _pending:
            return  # the pending feed runs after this call's slot came back
        _pending = True
    _schedule(REFILL_INTERVAL_S, _refill)


def _refill() -> None:
    global _pending
    with _lock:
        # Cleared before feeding: a call that ends during this feed schedules the next.
        _pending = False
    try:
        feed_lanes(PRIORITIES)
    except REFILL_ERRORS as error:
        log.warning("feeder.refill_failed", error=str(error))
