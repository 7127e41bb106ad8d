"""Container health check for celery beat: is its schedule file being written?

Beat answers no ping. It writes its schedule file when it starts and then at least
every ``sync_every`` (Celery's default: 180 s) while it keeps sending tasks, so a
file older than ``--max-age`` seconds means a beat that hangs or has stopped.

    python -m cli.healthcheck /var/lib/batchline/beat/celerybeat-schedule

Workers are checked with Celery's own ``celery -A celery_app inspect ping -d NODE``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

#: Three of beat's 180 s sync periods, plus slack for a slow tick.
DEFAULT_MAX_AGE_S = 600.0


def schedule_age(schedule: Path, now: float) -> float | None:
    """Seconds since beat last wrote ``schedule`` (any file the dbm backend made), or None.

    Args:
        schedule: the path given to ``celery beat --schedule``; dbm backends may add a suffix.
        now: the current time (``time.time()``).
    """
    candidates = [schedule, *schedule.parent.glob(f"{schedule.name}.*")]
    times = [path.stat().st_mtime for path in candidates if path.is_file()]
    return now - max(times) if times else None


def main(argv: list[str] | None = None) -> int:
    """Exit 0 when beat wrote its schedule file recently, else 1 with the reason on stderr."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("schedule", type=Path, help="the path given to beat --schedule")
    parser.add_argument("--max-age", type=float, default=DEFAULT_MAX_AGE_S, help="seconds")
    args = parser.parse_args(argv)
    age = schedule_age(args.schedule, time.time())
    if age is None:
        print(f"unhealthy: beat has not written {args.schedule}", file=sys.stderr)
        return 1
    if age > args.max_age:
        print(f"unhealthy: {args.schedule} last written {age:.0f} s ago", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
