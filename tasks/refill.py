"""Feed the lanes while a chunk still runs, when its calls give their slots back.

The feeder runs after every committed chunk. A chunk of an I/O-bound stage ends
with its slowest call (latency jitter), so the slots its faster calls gave back
would stay idle until then, and during its commit. Feeding as soon as a call
gives its slot back keeps the writer's slots busy; bounded to one feed per
``REFILL_INTERVAL_S`` per process, so it costs the ledger a few queries a second
at most, however many calls end.
"""

from __future__ import annotations

import threading
from time import monotonic
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
#: Shortest time between two refills of one process.
REFILL_INTERVAL_S: Final = 0.25

_lock = threading.Lock()
_last = 0.0


def _due(now: float) -> bool:
    global _last
    with _lock:
        if now - _last < REFILL_INTERVAL_S:
            return False
        _last = now
        return True


def refill_after_call() -> None:
    """Feed every lane, high first, unless this process did so within the interval.

    Never raises for an outage: the chunk's own feed and the sweeper follow anyway.
    """
    if not _due(monotonic()):
        return
    try:
        feed_lanes(PRIORITIES)
    except REFILL_ERRORS as error:
        log.warning("feeder.refill_failed", error=str(error))
