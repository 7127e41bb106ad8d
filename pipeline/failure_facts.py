"""The facts failure analysis reads, as the ledger aggregates them, and its thresholds.

Pure: no Celery, Redis or SQL. ``recovery.analysis`` fills :class:`FailureFacts`
in a few queries; ``pipeline.failure_analysis`` finds patterns in them and
``pipeline.failure_advice`` the recommendations.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

from pipeline.errors import BatchlineError, ErrorCategory, snake_case
from pipeline.retry_policy import STRATEGY, RetryStrategy

Recoverability = Literal["recoverable", "manual", "permanent"]

#: Failures per tenth of the run: the shell buckets failure times into this many slices.
TIME_BUCKETS: Final = 10
#: A failure whose stage output is gone (pruned) is counted under this stage.
UNKNOWN_STAGE: Final = "unknown"


def recoverability(category: ErrorCategory) -> Recoverability:
    """``recoverable`` (retried automatically), ``manual`` (after a fix) or ``permanent``.

    Read from the retry policy's table, so the two never disagree: MANUAL strategy
    (CONFIGURATION, DATA, CRITICAL) is manual, NONE (PERMANENT) is permanent, every
    retried category (TRANSIENT, RESOURCE, RATE_LIMIT) is recoverable.
    """
    strategy = STRATEGY[category]
    if strategy is RetryStrategy.MANUAL:
        return "manual"
    if strategy is RetryStrategy.NONE:
        return "permanent"
    return "recoverable"


def _error_classes() -> dict[str, ErrorCategory]:
    found: dict[str, ErrorCategory] = {}
    pending: list[type[BatchlineError]] = [BatchlineError]
    while pending:
        cls = pending.pop()
        found[cls.__name__] = cls.category
        pending.extend(cls.__subclasses__())
    return found


def category_of_class(error_class: str) -> ErrorCategory:
    """The category of a stored error class name, for a failure whose output is gone.

    batchline's own classes carry theirs; timeouts and connection errors are
    TRANSIENT; anything else DATA, as ``pipeline.classify.categorize`` decides.
    """
    known = _error_classes().get(error_class)
    if known is not None:
        return known
    if error_class in ("TimeoutError", "ConnectionError"):
        return ErrorCategory.TRANSIENT
    return ErrorCategory.DATA


def _category(value: str | None, error_class: str) -> ErrorCategory:
    try:
        return ErrorCategory(value) if value else category_of_class(error_class)
    except ValueError:
        return category_of_class(error_class)


# --- the facts --------------------------------------------------------------------------


@dataclass(frozen=True)
class ReasonCount:
    """How many of the batch's failed orders failed for one reason."""

    stage: str
    category: ErrorCategory
    error_class: str
    code: str
    failures: int

    @classmethod
    def stored(
        cls,
        stage: str | None,
        category: str | None,
        error_class: str | None,
        code: str | None,
        failures: int,
    ) -> ReasonCount:
        """From the ledger's columns; a missing output (pruned, or written before codes
        existed) falls back to what the item's error class says."""
        name = error_class or "UnknownError"
        return cls(
            stage or UNKNOWN_STAGE,
            _category(category, name),
            name,
            code or snake_case(name),
            failures,
        )


@dataclass(frozen=True)
class GroupCount:
    """A publisher's or customer's orders in the batch, and how many failed."""

    key: str
    failures: int
    orders: int


@dataclass(frozen=True)
class TimeBucket:
    """The failures in one tenth of the run, with the first and last failure's time."""

    failures: int
    first_at: datetime
    last_at: datetime


@dataclass(frozen=True)
class ConsecutiveRun:
    """The longest run of failed orders next to each other in the manifest."""

    length: int
    first_position: int
    last_position: int
    first_order: str
    last_order: str


@dataclass(frozen=True)
class ProblematicItem:
    """An order that failed more than once, counted over its original and every recovery."""

    order_id: str
    failures: int
    batches: int

    def to_json(self) -> dict[str, Any]:
        """As reported."""
        return {"order_id": self.order_id, "failures": self.failures, "batches": self.batches}


@dataclass(frozen=True)
class FailedDocument:
    """One failed order: where, why, and the last stage it got through."""

    order_id: str
    stage: str
    category: ErrorCategory
    error_class: str
    code: str
    reason: str
    attempts: int
    last_good_stage: str | None
    customer_id: str
    publisher_domain: str
    failed_at: datetime | None = None

    @property
    def recoverable(self) -> bool:
        """``batchline recover`` takes it without ``--all``."""
        return recoverability(self.category) == "recoverable"

    def to_json(self) -> dict[str, Any]:
        """As reported in ``failed_documents``."""
        return {
            "order_id": self.order_id,
            "stage": self.stage,
            "category": str(self.category),
            "error_class": self.error_class,
            "code": self.code,
            "reason": self.reason,
            "attempts": self.attempts,
            "recoverable": self.recoverable,
            "needs": recoverability(self.category),
            "last_good_stage": self.last_good_stage,
            "customer_id": self.customer_id,
            "publisher_domain": self.publisher_domain,
            "failed_at": self.failed_at.isoformat() if self.failed_at else None,
        }


@dataclass(frozen=True)
class FailureFacts:
    """Everything the ledger says about a batch's failures, already aggregated."""

    batch_id: str
    total_orders: int
    reasons: tuple[ReasonCount, ...] = ()
    publishers: tuple[GroupCount, ...] = ()
    customers: tuple[GroupCount, ...] = ()
    #: seconds from the batch's first stage output to its last
    run_seconds: float = 0.0
    #: failures per tenth of the run (empty buckets left out)
    buckets: tuple[TimeBucket, ...] = ()
    longest_run: ConsecutiveRun | None = None
    problematic: tuple[ProblematicItem, ...] = ()
    #: the first failed orders (by position), at most the shell's cap
    documents: tuple[FailedDocument, ...] = ()

    @property
    def total_failures(self) -> int:
        """How many of the batch's orders failed."""
        return sum(reason.failures for reason in self.reasons)


@dataclass(frozen=True)
class Thresholds:
    """When a figure becomes a pattern or a recommendation (the guide's and ours)."""

    #: percent of the batch's orders: above it, review the input (the guide's 50 %)
    high_error_rate: float = 50.0
    #: one reason code holding this share of the failures, and at least this many
    recurring_share: float = 0.5
    recurring_min: int = 3
    #: one publisher or customer holding this share of the failures, at least this
    #: many, and failing at least ``dominant_ratio`` times as often as the others
    dominant_share: float = 0.5
    dominant_min: int = 3
    dominant_ratio: float = 2.0
    #: this share of the failures in one tenth of a run of at least ``cluster_min_run``
    #: seconds, with at least ``cluster_min`` failures
    cluster_share: float = 0.5
    cluster_min: int = 5
    cluster_min_run: float = 60.0
    #: at least this many failed orders next to each other (not the whole batch)
    consecutive_min: int = 5


DEFAULT_THRESHOLDS: Final = Thresholds()


# --- what the analysis finds ---------------------------------------------------------


@dataclass(frozen=True)
class Pattern:
    """Something the failures have in common, with the figures that show it."""

    kind: str
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """As reported in ``patterns``."""
        return {"kind": self.kind, "summary": self.summary, "evidence": self.evidence}


def fraction(part: int, whole: int) -> float:
    """``part / whole`` to four places (0 for an empty whole)."""
    return round(part / whole, 4) if whole else 0.0


def percent(part: int, whole: int) -> float:
    """``part`` as a percentage of ``whole`` to two places (0 for an empty whole)."""
    return round(100.0 * part / whole, 2) if whole else 0.0


def sorted_counts(counts: Counter[str]) -> dict[str, int]:
    """Largest first, ties by name, so reports and tests read the same every time."""
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
