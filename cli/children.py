"""Child processes that die with their parent: the standard library only.

Kept apart from ``cli.embedded`` (which imports the database and Redis clients) so
that ``batchline worker``'s supervisor (``cli.supervisor``) stays small.
"""

from __future__ import annotations

import ctypes
import os
import signal
from collections.abc import Callable

#: prctl(2) option: the signal a child gets when the thread that spawned it exits.
_PR_SET_PDEATHSIG = 1


def die_with_parent(uid: int | None = None, gid: int | None = None) -> Callable[[], None]:
    """Build a ``preexec_fn`` that makes a child process die when its parent dies.

    Use it for every long-lived child (servers, Celery workers) so that nothing
    outlives the launcher, even after ``kill -9``. Linux only. Spawn from the
    main thread: the signal fires when the spawning *thread* exits.

    Args:
        uid: user id the child switches to before exec, or None to keep ours.
        gid: group id the child switches to (extra groups dropped), or None.

    Returns:
        A callable for ``subprocess.Popen(preexec_fn=...)``.
    """
    parent_pid = os.getpid()
    libc = ctypes.CDLL(None, use_errno=True)  # loaded before fork, not in the child

    def preexec() -> None:
        if gid is not None:
            os.setgroups([])
            os.setgid(gid)
        if uid is not None:
            os.setuid(uid)
        # Only after setuid/setgid: the kernel clears the death signal on credential changes.
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent_pid:  # parent died before prctl: no signal will come
            os._exit(1)

    return preexec
