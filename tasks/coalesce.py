"""One run at a time per process: calls that arrive during a run are served by one more.

The I/O worker's threads all feed the lanes: after every chunk and a moment after
every call that gave its slots back (``tasks.refill``). Fed one by one, each of
those feeds read the lane's queues and then met the lane's Redis lock held by its
neighbour thread (bench E at 2 s, 2,000 orders: 6,595 lock and flag ``SET``s and
5,584 ``LLEN``s from the feeder, a fifth of the I/O worker's Redis round trips,
each paid under the interpreter lock the writer's calls wait for). A feed reads
the pool as it is when it runs, so one feed that starts after a request serves
every request made before it started: the threads of one process need not queue
for the Redis lock, only to leave a note that the running feed looks once more.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Final

#: Rounds one caller runs at most; a request left after them waits for the next call
#: (in the I/O worker, the next chunk or call; at worst the sweep), as a caller's
#: thread has its own work to go back to.
MOST_ROUNDS: Final = 4


class Coalesced:
    """``run`` behind a process-local turn: concurrent calls share one run (or one more)."""

    def __init__(self, run: Callable[[], int], most_rounds: int = MOST_ROUNDS) -> None:
        """Wrap ``run`` (returns a count, e.g. messages sent)."""
        self._run = run
        self._most_rounds = most_rounds
        self._turn = threading.Lock()
        self._flag = threading.Lock()
        self._asked = False

    def __call__(self) -> int:
        """Run now, or leave the request to the thread running; what this call ran sent.

        The request is noted before the turn is tried, and the running thread looks
        at the note after each round and once more after giving the turn back, so a
        request is never left unserved while another thread holds the turn (unless
        that thread ran ``most_rounds`` already: then the next call serves it).
        """
        self._ask()
        sent, rounds = 0, 0
        while rounds < self._most_rounds and self._turn.acquire(blocking=False):
            try:
                while rounds < self._most_rounds and self._take_request():
                    rounds += 1
                    sent += self._run()
            finally:
                self._turn.release()
            if not self._pending():
                break  # else a request came after the last look: take the turn again
        return sent

    def _ask(self) -> None:
        with self._flag:
            self._asked = True

    def _pending(self) -> bool:
        with self._flag:
            return self._asked

    def _take_request(self) -> bool:
        with self._flag:
            asked, self._asked = self._asked, False
            return asked
