"""Try something again, with growing pauses, until it succeeds or the time is up."""

from __future__ import annotations

import time
from collections.abc import Callable

#: First and longest pause between two tries (seconds).
FIRST_PAUSE_S = 0.02
LONGEST_PAUSE_S = 0.1


def poll_until(
    attempt: Callable[[], bool],
    seconds: float,
    *,
    tried: bool = False,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Call ``attempt`` until it returns True or ``seconds`` have passed; its last answer.

    ``attempt`` runs at least once, or, with ``tried`` (the caller has just tried and
    failed), only after the first pause. The pause doubles from 20 ms up to 100 ms,
    so a crowd of pollers costs the thing they poll little, and never sleeps past
    the deadline.
    """
    deadline = clock() + seconds
    pause = FIRST_PAUSE_S
    if tried:
        if seconds <= 0:
            return False
        sleep(min(pause, seconds))
        pause = min(pause * 2, LONGEST_PAUSE_S)
    while not attempt():
        left = deadline - clock()
        if left <= 0:
            return False
        sleep(min(pause, left))
        pause = min(pause * 2, LONGEST_PAUSE_S)
    return True
