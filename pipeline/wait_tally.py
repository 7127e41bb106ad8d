"""Time a call spent waiting on a limit, tallied for the chunk that runs it.

:mod:`pipeline.pacing` sleeps for a service's ``conc=N`` call slot or a token of
its bucket; it notes each wait here. The task shell opens a :class:`WaitTally`
per chunk (:func:`tallying`, around each item's call) and flushes it to Redis
once the chunk has run. Outside a tally (a test, a script) a note goes nowhere.
A context variable, not an argument: the wait happens deep inside a writer or a
webhook client that knows nothing of chunks, and each item's thread runs in a
copy of the task's context, which still holds the same tally.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Final, Literal

#: ``slot``: a service's ``conc=N`` call slot; ``rate``: a token of its bucket.
WaitKind = Literal["slot", "rate"]
WAIT_KINDS: Final[tuple[WaitKind, ...]] = ("slot", "rate")


class WaitTally:
    """Summed wait milliseconds and number of waits by kind (thread-safe)."""

    def __init__(self) -> None:
        self._ms: Counter[str] = Counter()
        self._count: Counter[str] = Counter()
        self._lock = threading.Lock()

    def note(self, kind: WaitKind, seconds: float) -> None:
        """Add one wait of ``seconds`` (nothing for a wait of zero)."""
        if seconds <= 0:
            return
        with self._lock:
            self._ms[kind] += round(seconds * 1000)
            self._count[kind] += 1

    def totals(self) -> dict[WaitKind, tuple[int, int]]:
        """Kind -> (waits, summed milliseconds), only kinds that waited."""
        with self._lock:
            return {k: (self._count[k], self._ms[k]) for k in WAIT_KINDS if self._count[k]}


_current: ContextVar[WaitTally | None] = ContextVar("batchline_wait_tally", default=None)


def note_wait(kind: WaitKind, seconds: float) -> None:
    """Add a wait to the tally of the chunk running this call, if any."""
    tally = _current.get()
    if tally is not None:
        tally.note(kind, seconds)


@contextmanager
def tallying(tally: WaitTally) -> Iterator[WaitTally]:
    """Note every wait of the block in ``tally``."""
    token = _current.set(tally)
    try:
        yield tally
    finally:
        _current.reset(token)
