"""Publish a scenario's orders in a child process: ``python -m bench.submit NAME ORDERS JSON``.

A child of its own so the submitter's peak RSS and start-up are measured apart
from the harness. Prints one JSON line on stdout: the submitter's result plus
``rss_mb``. Submitters are named by "module:function" strings, so a scenario
module can be registered here without importing it (and without import cycles).
"""

from __future__ import annotations

import json
import resource
import sys
from collections.abc import Callable, Sequence
from typing import Any

from bench.registry import resolve

Submitter = Callable[[int, dict[str, Any]], dict[str, Any]]

#: name -> "module:function"; each function is ``fn(orders, options) -> dict``
#: returning at least ``{"submit_seconds": float}``.
SUBMITTERS: dict[str, str] = {
    "naive-chain": "bench.naive:submit_chain",
    "naive-single": "bench.naive:submit_single",
    "batchline": "bench.batchline:submit_orders",
}


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: Sequence[str] | None = None) -> int:
    """Run one submitter and print its result as one JSON line."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 3 or args[0] not in SUBMITTERS:
        names = ", ".join(SUBMITTERS)
        print(f"usage: python -m bench.submit {{{names}}} ORDERS JSON", file=sys.stderr)
        return 2
    submitter: Submitter = resolve(SUBMITTERS[args[0]])
    result = dict(submitter(int(args[1]), json.loads(args[2])))
    if "submit_seconds" not in result:
        raise KeyError(f"submitter {args[0]} returned no submit_seconds: {result}")
    result["rss_mb"] = peak_rss_mb()
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
