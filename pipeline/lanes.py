"""The lanes a batch's orders run in, best first: ``high``, ``normal``, ``low``.

Each lane is a Celery queue (``batch.<lane>``, see ``celery_app.LANES``) that
workers poll in this order.
"""

from __future__ import annotations

from typing import Final, Literal

Lane = Literal["high", "normal", "low"]

#: Lane names in priority order: a worker polls them in this order.
PRIORITIES: Final[tuple[Lane, ...]] = ("high", "normal", "low")
