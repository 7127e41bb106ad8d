"""One error hierarchy with a root; each class carries the category that picks its policy.

Stage handlers raise these; the task shell maps the category to a retry policy
(``pipeline.retry_policy``). Categories follow the product's batch guide.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any, Final

# A lower-case letter or digit followed by a capital, or a capital run before a
# capitalised word ("HTTPError" -> "HTTP_Error"): where snake_case puts a "_".
_WORD_BOUNDARY: Final = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


class ErrorCategory(StrEnum):
    """What kind of failure this is, which decides how it is retried."""

    TRANSIENT = "TRANSIENT"
    RESOURCE = "RESOURCE"
    RATE_LIMIT = "RATE_LIMIT"
    CONFIGURATION = "CONFIGURATION"
    DATA = "DATA"
    PERMANENT = "PERMANENT"
    CRITICAL = "CRITICAL"


def snake_case(name: str) -> str:
    """``"QualityRejected"`` -> ``"quality_rejected"``: a class name as a reason code."""
    return _WORD_BOUNDARY.sub("_", name).lower()


class BatchlineError(Exception):
    """Root of every error batchline raises on purpose.

    ``code`` is the stable reason code counted by failure analysis (``word_count``,
    ``webhook_status_503``): unlike the message it never carries ids, URLs or
    figures, so equal causes count together. Raise sites that know the precise
    cause pass it; otherwise it is the class name in snake_case.
    """

    category: ErrorCategory = ErrorCategory.PERMANENT

    def __init__(
        self, message: str, *, details: dict[str, Any] | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        #: JSON-ready facts kept with the failure (e.g. a QC report).
        self.details: dict[str, Any] = details or {}
        #: the stable reason code (snake_case)
        self.code: str = code or snake_case(type(self).__name__)

    @property
    def error_class(self) -> str:
        """The class name stored in the ledger and counted in error buckets."""
        return type(self).__name__


class UnknownBatch(BatchlineError, LookupError):
    """No batch has this id (status, analysis and recovery all raise this one)."""


class TransientError(BatchlineError):
    """Timeouts, dropped connections, a locked database: try again soon."""

    category = ErrorCategory.TRANSIENT


class ResourceError(BatchlineError):
    """Out of memory or disk: back off linearly."""

    category = ErrorCategory.RESOURCE


class RateLimited(BatchlineError):
    """An external service said slow down; ``retry_after`` is in seconds."""

    category = ErrorCategory.RATE_LIMIT

    def __init__(
        self, message: str, retry_after: float | None = None, *, code: str | None = None
    ) -> None:
        super().__init__(message, details={"retry_after": retry_after}, code=code)
        self.retry_after = retry_after


class ConfigurationError(BatchlineError):
    """Something an operator must fix in the configuration."""

    category = ErrorCategory.CONFIGURATION


class DataError(BatchlineError):
    """Stored data an operator must look at before the order can continue."""

    category = ErrorCategory.DATA


class PermanentError(BatchlineError):
    """Retrying cannot help: the order fails at once."""

    category = ErrorCategory.PERMANENT


class InvalidInput(PermanentError):
    """The order itself is wrong (a field, an unknown publisher)."""


class PolicyViolation(PermanentError):
    """The order breaks a content or anchor policy."""


class CustomerSuspended(PermanentError):
    """The customer may not order right now."""


class DuplicateOrder(PermanentError):
    """The same customer, target and publisher were ordered recently."""


class QualityRejected(PermanentError):
    """QC found a problem a rewrite could not fix."""


class RewriteNeeded(BatchlineError):
    """QC found problems a rewrite can fix: the order goes back to WRITING with feedback.

    Not a failure: ``details`` holds the QC report whose ``feedback`` lines the
    writer receives.
    """


class CriticalError(BatchlineError):
    """Data corruption or a security breach: all processing must halt."""

    category = ErrorCategory.CRITICAL


class DataCorruption(CriticalError):
    """Stored data contradicts itself."""


class SecurityBreach(CriticalError):
    """Something happened that must never happen, such as a forged receipt."""
