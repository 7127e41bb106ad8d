"""Lower lanes' items pause while a higher lane's chunk runs in the same worker process.

The I/O worker runs up to ``BATCH_IO_WORKER_THREADS`` chunks at once in one
process, so they share its GIL: the writer's and the publisher's client work, and
QC fused into writing chunks, are CPU work under one lock. Behind a low backlog, a
high chunk's fused QC ran 4-5 times slower than on an idle system, because 30-odd low
threads took their turns at the GIL between every one of its steps. Strict lane
order held at the queues but not inside the process.

So every chunk counts itself as running in its lane (:meth:`LaneGate.running`)
and, before each item's call and each fused judgement, an item of a lower lane
waits (:meth:`LaneGate.pause`) while a chunk of a higher lane runs here. It waits
holding no concurrency slot (the pause comes before the slot is taken), and for
a bounded time, so a chunk always ends within its limits however much high work
arrives; a paused call simply starts later. High chunks never wait. In a prefork
process a chunk is alone, so nothing ever pauses there.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from pipeline.lanes import PRIORITIES

#: The longest one pause lasts: past it the item goes on, whatever still runs above.
MAX_PAUSE_S = 5.0


class LaneGate:
    """How many chunks of each lane run in this process, and a wait for the lanes above."""

    def __init__(self) -> None:
        """An empty gate: nothing runs, nothing pauses."""
        self._changed = threading.Condition()
        self._running: Counter[str] = Counter()

    @contextmanager
    def running(self, lane: str) -> Iterator[None]:
        """Count a chunk of ``lane`` as running while the block runs."""
        with self._changed:
            self._running[lane] += 1
        try:
            yield
        finally:
            with self._changed:
                self._running[lane] -= 1
                self._changed.notify_all()

    def busy_above(self, lane: str) -> bool:
        """Whether a chunk of a lane above ``lane`` runs in this process."""
        with self._changed:
            return self._busy_above(lane)

    def _busy_above(self, lane: str) -> bool:
        if lane not in PRIORITIES:
            return False
        return any(self._running[higher] > 0 for higher in PRIORITIES[: PRIORITIES.index(lane)])

    def pause(self, lane: str, limit: float) -> float:
        """Wait while a higher lane's chunk runs here, at most ``limit`` seconds; seconds waited.

        Returns at once (0.0) when nothing runs above ``lane``, as for ``high``.
        """
        began = time.monotonic()
        deadline = began + min(max(0.0, limit), MAX_PAUSE_S)
        with self._changed:
            while self._busy_above(lane):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(left)
        return time.monotonic() - began


#: The gate of this worker process.
GATE = LaneGate()
