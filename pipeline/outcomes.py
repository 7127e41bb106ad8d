"""What a stage did to each item of a chunk, as one of six outcomes, and their summary.

``Done | Failed | Rewrite | Retry | Halt | Deferred``: the chunk runner turns each item's
result (its output, or the error it raised) into one of these with
:func:`outcome_of_error`, the soft-time-limit rule (:func:`out_of_time`) and the
preparer rule (:func:`not_prepared`), then records them and summarises them
with :func:`summarise`. Pure: no Celery, Redis or SQL.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from pipeline.classify import error_class_name, reason_code
from pipeline.errors import BatchlineError, ErrorCategory, RewriteNeeded
from pipeline.retry_policy import RetryStrategy, decide

#: When an item's run started and ended (wall clock, UTC).
Span = tuple[datetime, datetime]


@dataclass(frozen=True)
class Done:
    """The stage succeeded; ``output`` is stored and the item moves on."""

    item_id: int
    output: dict[str, Any]
    duration_ms: float = 0.0
    span: Span | None = None

    @property
    def receipt(self) -> dict[str, Any] | None:
        """The delivery receipt, when the stage published the order."""
        receipt = self.output.get("receipt")
        return receipt if isinstance(receipt, dict) else None


@dataclass(frozen=True)
class Failed:
    """The order failed for good (until an operator recovers it)."""

    item_id: int
    error_class: str
    reason: str
    category: ErrorCategory
    strategy: RetryStrategy
    details: dict[str, Any] = field(default_factory=dict)
    duration_ms: float = 0.0
    #: the stable reason code (``pipeline.classify.reason_code``) analysis counts by
    code: str = ""
    #: the stage's tries, the failing one included (the item's counter resets when it fails)
    attempts: int = 0
    span: Span | None = None

    @property
    def needs_manual_intervention(self) -> bool:
        """An operator must act (fix data or configuration) before recovery helps."""
        return self.strategy is RetryStrategy.MANUAL

    def output(self) -> dict[str, Any]:
        """The stored output of the failure (read by analysis and ``batchline order``)."""
        return {
            "error": self.reason,
            "category": self.category,
            "code": self.code,
            "attempts": self.attempts,
            "needs_manual_intervention": self.needs_manual_intervention,
            "details": self.details,
        }


@dataclass(frozen=True)
class Rewrite:
    """QC sends the article back to the writer with ``details["feedback"]``."""

    item_id: int
    reason: str
    details: dict[str, Any] = field(default_factory=dict)
    duration_ms: float = 0.0
    span: Span | None = None

    def output(self) -> dict[str, Any]:
        """The stored QC report, marked as a rewrite."""
        return {**self.details, "rewrite": True}


@dataclass(frozen=True)
class Retry:
    """Run the item again after ``delay`` seconds; ``spends_budget`` counts the attempt."""

    item_id: int
    reason: str
    delay: float = 0.0
    spends_budget: bool = True
    strategy: RetryStrategy = RetryStrategy.IMMEDIATE
    #: the error's reason code and category (what the batch report counts retries by)
    code: str = ""
    category: str = ""


@dataclass(frozen=True)
class Halt:
    """A CRITICAL error: all processing stops; the item goes back untouched."""

    item_id: int
    reason: str


@dataclass(frozen=True)
class Deferred:
    """Bound for an open circuit (``pipeline.breaker``): wait, without spending an attempt.

    The item waits in the ledger's pool, leased to the circuit until
    ``not_before`` (epoch seconds, the end of the cool-down), not as a Celery
    countdown. Nothing is stored as its output.
    """

    item_id: int
    circuit: str
    not_before: float
    reason: str = ""


ItemOutcome = Done | Failed | Rewrite | Retry | Halt | Deferred


def outcome_of_error(
    item_id: int, error: BaseException, attempt: int, max_retries: int, duration_ms: float = 0.0
) -> Failed | Rewrite | Retry | Halt:
    """What an item whose ``attempt``-th run raised ``error`` becomes (``decide``'s policy)."""
    reason = str(error)
    if isinstance(error, RewriteNeeded):
        return Rewrite(item_id, reason, dict(error.details), duration_ms)
    decision = decide(error, attempt, max_retries)
    if decision.action == "halt":
        return Halt(item_id, reason)
    if decision.action == "retry":
        return Retry(
            item_id,
            reason,
            decision.delay,
            decision.spends_budget,
            decision.strategy,
            reason_code(error),
            str(decision.category),
        )
    details = dict(error.details) if isinstance(error, BatchlineError) else {}
    return Failed(
        item_id,
        error_class_name(error),
        reason,
        decision.category,
        decision.strategy,
        details,
        duration_ms,
        reason_code(error),
        attempts=attempt,
    )


def with_span(outcome: ItemOutcome, span: Span) -> ItemOutcome:
    """``outcome`` with the span of the run that produced it (retries and halts have none)."""
    if isinstance(outcome, Done | Failed | Rewrite):
        return replace(outcome, span=span)
    return outcome


def out_of_time(
    running: Sequence[tuple[int, int]], waiting: Sequence[int], *, max_retries: int
) -> list[ItemOutcome]:
    """The soft-time-limit rule: what the items left when a chunk runs out of time become.

    ``running`` holds ``(item_id, attempt)`` of the items whose call was under way.
    Each pays for its try like any timeout (it may be what is slow, and its budget
    bounds that); the items that never ran are retried at once without spending
    an attempt: running out of time is not their fault.
    """
    timeout = TimeoutError("the stage's soft time limit struck while this order ran")
    left: list[ItemOutcome] = [
        outcome_of_error(item_id, timeout, attempt, max_retries) for item_id, attempt in running
    ]
    reason = "not run: the chunk reached its soft time limit"
    left.extend(
        Retry(item_id, reason, spends_budget=False, code="soft_time_limit") for item_id in waiting
    )
    return left


def not_prepared(item_ids: Iterable[int], reason: str) -> list[ItemOutcome]:
    """The chunk ran out of time while loading what its items need: retry all, none pays."""
    return [
        Retry(item_id, f"not run: {reason}", spends_budget=False, code="not_prepared")
        for item_id in item_ids
    ]


@dataclass(frozen=True)
class ChunkSummary:
    """A chunk's outcomes after recording: what moved, what waits, what stopped."""

    succeeded: tuple[int, ...] = ()
    failed: tuple[int, ...] = ()
    rewrites: tuple[int, ...] = ()
    retries: tuple[Retry, ...] = ()
    halts: tuple[Halt, ...] = ()
    #: items held back by an open circuit, leased to it until its cool-down ends
    deferred: tuple[Deferred, ...] = ()
    #: error class -> how many of the chunk's orders failed with it
    failure_classes: dict[str, int] = field(default_factory=dict)
    #: the recorded failures themselves (class, code, reason), in item order
    failures: tuple[Failed, ...] = ()

    @property
    def retry_ids(self) -> list[int]:
        """Items the chunk's retry message runs again."""
        return [retry.item_id for retry in self.retries]

    @property
    def retry_delay(self) -> float:
        """When the retry message runs: after the longest delay any of its items needs."""
        return max((retry.delay for retry in self.retries), default=0.0)

    @property
    def refunded_retries(self) -> list[int]:
        """Retried items whose attempt is given back (rate limits, never ran)."""
        return [retry.item_id for retry in self.retries if not retry.spends_budget]

    @property
    def spent_retries(self) -> list[int]:
        """Retried items that paid for their try."""
        return [retry.item_id for retry in self.retries if retry.spends_budget]


def summarise(outcomes: Sequence[ItemOutcome], recorded: set[int]) -> ChunkSummary:
    """Summarise a chunk's outcomes; ``recorded`` are the items whose outcome the ledger took.

    A Done, Failed or Rewrite of an item not in ``recorded`` changed nothing (its
    lease had passed to another run) and is left out; retries, halts and deferrals
    are not recorded as outcomes and always count.
    """
    taken = [o for o in outcomes if o.item_id in recorded]
    failed = [o for o in taken if isinstance(o, Failed)]
    return ChunkSummary(
        succeeded=tuple(o.item_id for o in taken if isinstance(o, Done)),
        failed=tuple(o.item_id for o in failed),
        rewrites=tuple(o.item_id for o in taken if isinstance(o, Rewrite)),
        retries=tuple(o for o in outcomes if isinstance(o, Retry)),
        halts=tuple(o for o in outcomes if isinstance(o, Halt)),
        deferred=tuple(o for o in outcomes if isinstance(o, Deferred)),
        failure_classes=dict(Counter(o.error_class for o in failed)),
        failures=tuple(failed),
    )
