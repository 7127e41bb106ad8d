"""The process ``batchline worker`` becomes when it runs several Celery workers.

``batchline worker`` builds the workers' command lines (settings, lanes, queues),
then replaces itself with ``python -m cli.supervisor '<JSON list of argvs>'``: the
same pid, so systemd, Docker or a shell still hold the process they started, but
without the CLI's imports (typer, rich, pydantic, the settings), which it no longer
needs. It imports the standard library only (``cli.children``, ``cli.workers``), so its
resident memory is the interpreter's, not the CLI's (measured in docs/BENCHMARKS.md,
"The supervisor's memory").
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

from cli.children import die_with_parent
from cli.workers import stop_workers

#: How long the supervisor gives its workers to finish their tasks once one has exited.
STOP_TIMEOUT_S = 60.0


def command(argvs: Sequence[Sequence[str]]) -> list[str]:
    """The command line that runs :func:`supervise` on ``argvs`` in a fresh interpreter."""
    return [sys.executable, "-m", "cli.supervisor", json.dumps([list(a) for a in argvs])]


def supervise(commands: Sequence[Sequence[str]]) -> int:
    """Run ``commands`` as children until one exits; then stop the rest. Its exit code.

    SIGTERM and SIGINT are passed on to every child (Celery's warm shutdown), so a
    supervisor (systemd, Kubernetes) stopping ``batchline worker`` stops them all.
    """
    children = [
        subprocess.Popen(list(command), preexec_fn=die_with_parent()) for command in commands
    ]

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)
    code = _first_exit(children)
    stop_workers(children, timeout=STOP_TIMEOUT_S)
    return code


def _first_exit(children: Sequence[subprocess.Popen[bytes]]) -> int:
    while True:
        for child in children:
            code = child.poll()
            if code is not None:
                return code
        time.sleep(0.5)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m cli.supervisor '<JSON list of argvs>'``: supervise those commands."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m cli.supervisor '<JSON list of command lines>'", file=sys.stderr)
        return 2
    commands = json.loads(args[0])
    if not (
        isinstance(commands, list)
        and commands
        and all(isinstance(c, list) and c and all(isinstance(a, str) for a in c) for c in commands)
    ):
        print("cli.supervisor: expected a non-empty JSON list of command lines", file=sys.stderr)
        return 2
    return supervise(commands)


if __name__ == "__main__":
    raise SystemExit(main())
