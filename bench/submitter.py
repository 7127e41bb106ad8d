"""Run a submitter (``python -m bench.submit``) in a child process and read its figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Final

from bench.services import BenchEnv

#: The seed of the sample orders a submitter builds when its options name none
#: (scenario E's orders; ``bench.e_bound`` replays the same ones).
ORDER_SEED: Final = 11

_REPO_ROOT = Path(__file__).resolve().parents[1]
_TAIL_LINES = 30


def _tail(text: str, lines: int = _TAIL_LINES) -> str:
    return "\n".join(text.splitlines()[-lines:]) or "(empty)"


def run_submitter(
    name: str,
    orders: int,
    options: dict[str, Any],
    env: BenchEnv,
    *,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Publish ``orders`` orders with submitter ``name`` in a child process.

    Args:
        name: a key of ``bench.submit.SUBMITTERS``.
        orders: how many orders to publish.
        options: JSON-able options handed to the submitter (e.g. ``{"run": ...}``).
        env: the benchmark session; its variables are exported to the child.
        timeout: seconds before the child is killed; default 120 s + 10 ms per order.

    Returns:
        The submitter's result: at least ``submit_seconds`` and ``rss_mb``.

    Raises:
        RuntimeError: the child failed or printed no JSON; the message ends with its stderr.
    """
    command = [sys.executable, "-m", "bench.submit", name, str(orders), json.dumps(options)]
    done = subprocess.run(
        command,
        env={**os.environ, **env.env},
        cwd=_REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout if timeout is not None else 120 + orders / 100,
        check=False,
    )
    with (env.log_dir / f"submit-{name}.log").open("a") as log:
        log.write(done.stderr)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(
            f"submitter {name} ({orders} orders) exited with {done.returncode}; "
            f"stderr:\n{_tail(done.stderr)}"
        )
    try:
        result: dict[str, Any] = json.loads(lines[-1])
    except json.JSONDecodeError as error:
        raise RuntimeError(
            f"submitter {name} printed no JSON line ({error}); stdout:\n{_tail(done.stdout)}"
        ) from error
    return result
