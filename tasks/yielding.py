"""When a running chunk stops early so that waiting higher-lane work gets its process.

A worker polls its queues in strict lane order, but only when a process is free,
and a running chunk is never interrupted. With the prefork processes all in low
preflight or QC chunks (about 1 s each under load), a high order waited for the
shortest of them at every CPU-bound stage.

So a chunk of a CPU-bound stage (its items run one after another) looks, between
two items, at the queues of the lanes above its own that this worker consumes. If
any holds a message, the chunk ends after the item that just finished: the items
it has not started go back to the pool with their attempt refunded (as items
without a concurrency slot do), the outcomes so far are committed, the message is
acknowledged, and the free process takes the waiting message first. The feed
after the chunk sends the handed-back items again, behind the higher lane's work.
A high order then waits for one item of a low chunk, not for the whole chunk.

A chunk of an I/O-bound stage runs its items at once in threads, so there is no
"between two items"; its items that wait for a concurrency slot held by others
(``ChunkRun.take``) give way instead: they stop waiting when a higher lane's
message waits for this worker, and go back to the pool like the unstarted items
above. The chunk then ends when the calls already under way end, and its thread
takes the higher message. Without this a high writing or delivery chunk waited
for a thread behind up to ``BATCH_SLOT_WAIT_SECONDS`` of every low chunk's slot
waits (about 1.5 s per I/O stage behind the priority benchmark's low backlog).

A chunk always runs its first item (an I/O-bound chunk: every item that found its
slots free), so every chunk makes progress whatever waits. High chunks never stop
early. The queues are read at most every
:data:`CHECK_INTERVAL_S` (one pipelined ``LLEN`` per queue), so tiny items pay
nearly nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection

import redis
import structlog

from celery_app import app, lane_queues
from metrics.keys import queue_key
from metrics.redis_client import redis_client
from pipeline.lanes import PRIORITIES

log = structlog.get_logger(__name__)

#: How often a running chunk may look at the higher lanes' queues: a pipelined
#: ``LLEN`` costs well under a millisecond, a high chunk waiting for the look more.
CHECK_INTERVAL_S = 0.005


def queues_above(lane: str, consumed: Collection[str] | None) -> list[str]:
    """Queues of the lanes above ``lane`` that a worker consuming ``consumed`` polls.

    ``consumed`` None means every queue (a worker started without ``-Q``). Queues
    this worker does not poll are left out: stopping for work another worker
    takes would only cut chunks short for nothing.
    """
    if lane not in PRIORITIES:
        return []
    above = PRIORITIES[: PRIORITIES.index(lane)]
    queues = [queue for higher in above for queue in lane_queues(higher)]
    return [q for q in queues if consumed is None or q in consumed]


def _consumed_queues() -> Collection[str] | None:
    """Names of the queues this worker consumes (its ``-Q``), None if it selected none."""
    selected = app.amqp.queues.consume_from
    return None if selected is None else set(selected)


class HigherWorkWatch:
    """Tells a running chunk of ``lane`` whether work of a higher lane is waiting."""

    def __init__(self, lane: str, client: redis.Redis | None = None) -> None:
        """Watch the higher lanes' queues this worker consumes (none for ``high``)."""
        self._keys = [queue_key(q) for q in queues_above(lane, _consumed_queues())]
        self._client = client
        self._next_check = time.monotonic() + CHECK_INTERVAL_S
        self._seen = False
        # An I/O-bound chunk's items ask from their own threads.
        self._lock = threading.Lock()

    def waiting(self) -> bool:
        """Whether a higher lane's queue holds a message (False between two checks).

        Once it has seen one it answers True from then on: the chunk is ending, and
        every item still to start or still waiting for a slot should give way, not
        only the one that asked at the moment of the look. A Redis error counts as
        nothing waiting: the chunk goes on as it would have.
        """
        with self._lock:
            now = time.monotonic()
            if self._seen or not self._keys or now < self._next_check:
                return self._seen
            self._next_check = now + CHECK_INTERVAL_S
            self._seen = self._look()
            return self._seen

    def _look(self) -> bool:
        client = self._client or redis_client()
        try:
            pipe = client.pipeline(transaction=False)
            for key in self._keys:
                pipe.llen(key)
            return any(int(length) > 0 for length in pipe.execute())
        except redis.RedisError as error:
            log.warning("chunk.yield_check_failed", error=str(error))
            return False
