"""The exporter's order counts, read from the ledger in the background instead of per scrape.

Counting a large pool is the one part of a scrape that grows with the backlog
(about 40-90 ms at 100,000 pooled orders on a loaded 2-core machine,
docs/BENCHMARKS.md). :class:`ItemCountSnapshots` re-reads the counts every
``refresh_seconds`` in a thread of its own, so a scrape only copies the latest
snapshot and says how old it is (``batchline_item_counts_age_seconds``). With
``refresh_seconds`` 0 every scrape reads the ledger itself (age 0).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

#: How often a long-running exporter (``batchline exporter``, the API's ``/metrics``)
#: re-reads the order counts in the background: Prometheus's usual 5 s scrape.
REFRESH_SECONDS = 5.0

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ItemCounts:
    """One reading of the ledger's order counts.

    Attributes:
        rows: ``(lane, state, pooled, n, oldest_seconds)`` rows of
            ``ledger.metrics_queries.unfinished_item_counts``.
        read_at: monotonic seconds when the reading finished.
        read_seconds: how long the reading took (its cost to the ledger).
    """

    rows: Sequence[Any]
    read_at: float
    read_seconds: float


class ItemCountSnapshots:
    """The latest order counts, refreshed every ``refresh_seconds`` by a daemon thread.

    The first :meth:`latest` reads synchronously (a scrape right after start sees
    the ledger as it is) and starts the thread. A failed refresh keeps the previous
    snapshot and is logged; its age keeps growing, which an alert can watch.

    Args:
        read: reads the counts from the ledger (one statement).
        refresh_seconds: seconds between readings; 0 reads at every :meth:`latest`.
        clock: monotonic seconds.
    """

    def __init__(
        self,
        read: Callable[[], Sequence[Any]],
        refresh_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self.refresh_seconds = refresh_seconds
        self._clock = clock
        self._latest: ItemCounts | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def latest(self) -> tuple[ItemCounts, float]:
        """The newest snapshot and its age in seconds (reading one first if there is none)."""
        with self._lock:
            kept = self._latest
        if self.refresh_seconds <= 0 or kept is None:
            kept = self.refresh()
            if self.refresh_seconds > 0:
                self._start()
        return kept, max(0.0, self._clock() - kept.read_at)

    def refresh(self) -> ItemCounts:
        """Read the counts now and keep them as the latest snapshot."""
        started = self._clock()
        rows = self._read()
        finished = self._clock()
        counts = ItemCounts(rows, finished, finished - started)
        with self._lock:
            self._latest = counts
        return counts

    def stop(self) -> None:
        """Stop the refreshing thread (it is a daemon: a process may also just exit)."""
        self._stop.set()

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self._run, name="batchline-item-counts", daemon=True
            )
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.refresh_seconds):
            try:
                self.refresh()
            except Exception as error:
                # Why broad: any failure (ledger down, a timeout) must not end the thread;
                # the growing age exported with the counts tells the operator.
                log.warning("exporter.item_counts_failed", error=str(error))
