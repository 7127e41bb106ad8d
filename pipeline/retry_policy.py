"""What to do with an item whose stage raised: retry (how, when), fail, or halt everything.

One table maps each :class:`ErrorCategory` to a :class:`RetryStrategy`; ``decide``
applies it to one failure. Pure: the task shell carries the decision out with
Celery's retry machinery and the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Literal

from pipeline.classify import categorize, retry_delay
from pipeline.errors import ErrorCategory


class RetryStrategy(StrEnum):
    """How a category is retried, as named in the product's batch guide."""

    IMMEDIATE = "IMMEDIATE"
    EXPONENTIAL = "EXPONENTIAL"
    LINEAR = "LINEAR"
    SCHEDULED = "SCHEDULED"
    MANUAL = "MANUAL"
    NONE = "NONE"


STRATEGY: Final[dict[ErrorCategory, RetryStrategy]] = {
    ErrorCategory.TRANSIENT: RetryStrategy.EXPONENTIAL,  # the first retry is IMMEDIATE
    ErrorCategory.RESOURCE: RetryStrategy.LINEAR,
    ErrorCategory.RATE_LIMIT: RetryStrategy.SCHEDULED,  # at the server's Retry-After
    ErrorCategory.CONFIGURATION: RetryStrategy.MANUAL,
    ErrorCategory.DATA: RetryStrategy.MANUAL,
    ErrorCategory.PERMANENT: RetryStrategy.NONE,
    ErrorCategory.CRITICAL: RetryStrategy.MANUAL,
}

Action = Literal["retry", "fail", "halt"]


@dataclass(frozen=True)
class Decision:
    """The verdict on one failure."""

    action: Action
    category: ErrorCategory
    strategy: RetryStrategy
    delay: float = 0.0
    spends_budget: bool = True

    @property
    def needs_manual_intervention(self) -> bool:
        """True when an operator must act before the order can go on."""
        return self.strategy is RetryStrategy.MANUAL


def decide(error: BaseException, attempt: int, max_retries: int) -> Decision:
    """Decide the fate of an item whose ``attempt``-th try raised ``error``.

    ``attempt`` counts tries of this stage so far (1 for the first); the item may
    be retried while ``attempt <= max_retries``. Rate limits defer without
    spending that budget.
    """
    category = categorize(error)
    strategy = STRATEGY[category]
    if category is ErrorCategory.CRITICAL:
        return Decision("halt", category, strategy)
    if category is ErrorCategory.RATE_LIMIT:
        return Decision("retry", category, strategy, retry_delay(error, attempt), False)
    if strategy in (RetryStrategy.NONE, RetryStrategy.MANUAL) or attempt > max_retries:
        return Decision("fail", category, strategy)
    delay = retry_delay(error, attempt)
    shown = RetryStrategy.IMMEDIATE if delay == 0 else strategy
    return Decision("retry", category, shown, delay)
