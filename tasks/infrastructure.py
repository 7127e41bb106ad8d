"""Errors of the services around a task (ledger, broker, Redis), never of an order.

They retry the whole chunk with Celery's backoff. Raised inside a stage handler
they must not be recorded as the item's failure: the order did nothing wrong.
Claims and records are conditional, so the retried chunk redoes only what is left.
The builtin ``ConnectionError`` is not here: raised by a handler talking to an outside
service it stays the item's TRANSIENT error, retried per item.
"""

from __future__ import annotations

import redis
from kombu.exceptions import OperationalError as KombuOperationalError
from sqlalchemy.exc import DBAPIError

INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (
    DBAPIError,
    redis.ConnectionError,
    redis.TimeoutError,
    KombuOperationalError,  # kombu's wrapper when the feeder's publish fails
)
