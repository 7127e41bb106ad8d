"""Map any exception to an :class:`ErrorCategory`, and a category to its retry delay.

Pure functions, tested with tables; the task shell calls them. Errors we did not
raise on purpose are classified by type: network and timeout errors are
TRANSIENT, memory and disk errors RESOURCE, anything else DATA (an operator must
look), so a bug in a handler never turns into a retry storm.
"""

from __future__ import annotations

import errno
from typing import Final

from pipeline.errors import BatchlineError, ErrorCategory, RateLimited, snake_case

_MAX_EXPONENT: Final = 30  # 2**30 s is far past any cap; larger exponents only risk overflow
_RESOURCE_ERRNOS: Final = frozenset({errno.ENOSPC, errno.ENOMEM, errno.EDQUOT})


def categorize(error: BaseException) -> ErrorCategory:
    """Return the category that decides how ``error`` is handled."""
    if isinstance(error, BatchlineError):
        return error.category
    if isinstance(error, MemoryError):
        return ErrorCategory.RESOURCE
    if isinstance(error, OSError) and error.errno in _RESOURCE_ERRNOS:
        return ErrorCategory.RESOURCE
    if isinstance(error, TimeoutError | ConnectionError):
        return ErrorCategory.TRANSIENT
    return ErrorCategory.DATA


def error_class_name(error: BaseException) -> str:
    """The class name stored with a failed item."""
    return type(error).__name__


def reason_code(error: BaseException) -> str:
    """The stable reason code failure analysis counts ``error`` under.

    A batchline error carries its own (a QC or preflight check's name, a webhook's
    status); any other exception is named by its class in snake_case
    (``TimeoutError`` -> ``timeout_error``).
    """
    if isinstance(error, BatchlineError):
        return error.code
    return snake_case(type(error).__name__)


def retry_delay(error: BaseException, attempt: int, *, cap: float = 300.0) -> float:
    """Seconds to wait before attempt ``attempt + 1`` of work that failed with ``error``.

    The first retry of a transient error is immediate; later ones back off
    exponentially. Resource errors back off linearly. A rate limit honours the
    server's ``Retry-After`` when it gave one.
    """
    category = categorize(error)
    if category is ErrorCategory.RATE_LIMIT:
        assert isinstance(error, RateLimited)
        if error.retry_after is not None:
            return min(max(error.retry_after, 0.0), cap)
        return min(2.0 ** min(attempt, _MAX_EXPONENT), cap)
    if category is ErrorCategory.RESOURCE:
        return min(10.0 * attempt, cap)
    if attempt <= 1:
        return 0.0
    return min(2.0 ** min(attempt - 1, _MAX_EXPONENT), cap)
