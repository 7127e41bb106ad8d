"""Which failed orders a recovery takes, where each resumes, and the recovery batch's id.

Pure: no Celery, Redis or SQL. ``recovery.recover`` loads the failed items of a
batch, asks :func:`plan_recovery` what to do, and writes the plan to the ledger.

A recovered order is a new item in a new batch (the original's history is never
rewritten). It resumes at the stage that failed, reading the lineage's stored
output of the stage before (a failed delivery is delivered again, not rewritten).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.chunk import DEFAULT_MAX_RETRIES
from pipeline.errors import ErrorCategory
from pipeline.failure_facts import recoverability
from pipeline.lanes import Lane
from pipeline.manifest import Identifier, ManifestError
from pipeline.stage_registry import STAGES, Stage, stage_named
from pipeline.states import ItemState

#: Skip reasons, as counted in ``skipped``.
SKIP_MANUAL: Final = "needs_retry_all"
SKIP_PERMANENT: Final = "permanent"
SKIP_RECOVERED: Final = "already_recovered"
SKIP_NOT_FAILED: Final = "not_failed"
SKIP_NOT_ASKED: Final = "not_in_order_ids"

_MAX_ID: Final = 128


class RecoveryRefused(ManifestError):
    """A recovery was refused before anything was written; ``field`` names why."""


class RecoveryOptions(BaseModel):
    """``recover_failed_batch``'s options, validated at the edge."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: the recovery batch's per-stage retry budget (as ``submit_batch``'s option)
    max_retries: int = Field(default=DEFAULT_MAX_RETRIES, ge=0, le=20)
    #: also take MANUAL failures (CONFIGURATION, DATA, CRITICAL), once their cause is fixed
    retry_all: bool = False
    #: the recovery's lane (default: the original batch's)
    priority: Lane | None = None
    #: only these orders; naming a PERMANENT failure here is the only way to retry it
    order_ids: Annotated[tuple[Identifier, ...], Field(min_length=1, max_length=100_000)] | None = (
        None
    )


def parse_options(options: Any) -> RecoveryOptions:
    """Validate ``options`` (a dict or None).

    Raises:
        RecoveryRefused: naming the field (``options.max_retries``) and the problem.
    """
    if options is not None and not isinstance(options, dict):
        raise RecoveryRefused("options", f"must be an object, got {type(options).__name__}")
    try:
        return RecoveryOptions.model_validate(options or {})
    except ValidationError as error:
        first = error.errors()[0]
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"])
        problem = str(first["msg"]).removeprefix("Value error, ")
        raise RecoveryRefused(f"options{where}", problem) from None


@dataclass(frozen=True)
class FailedItem:
    """A failed order of the batch being recovered, as the ledger knows it."""

    item_id: int
    order_id: str
    #: the stage that failed (None: no failure output survived, e.g. pruned)
    stage: str | None
    #: its category (None: unknown, treated as DATA: an operator looks first)
    category: str | None
    #: an item of an earlier recovery already recovers it
    recovered: bool


@dataclass(frozen=True)
class Pick:
    """One failed item to recover, and the state its recovery item starts in."""

    item_id: int
    order_id: str
    state: ItemState


@dataclass(frozen=True)
class RecoveryPlan:
    """What a recovery takes and what it leaves, with the reason counted."""

    picks: tuple[Pick, ...] = ()
    skipped: dict[str, int] = field(default_factory=dict)


def category_of(failed: FailedItem) -> ErrorCategory:
    """The failure's category; an unknown one counts as DATA (manual)."""
    try:
        return ErrorCategory(failed.category or ErrorCategory.DATA)
    except ValueError:
        return ErrorCategory.DATA


def skip_reason(failed: FailedItem, *, retry_all: bool, named: bool) -> str | None:
    """Why ``failed`` is not recovered (None: it is).

    Recoverable categories always (the cause was passing); manual ones (an operator
    fixed the cause) only with ``retry_all`` or named; permanent ones only named. The
    kinds come from :func:`recoverability`, the retry policy's own table. An item is
    recovered once (its recovery's failures are recovered from that batch).
    """
    if failed.recovered:
        return SKIP_RECOVERED
    needs = recoverability(category_of(failed))
    if needs == "recoverable" or named:
        return None
    if needs == "manual":
        return None if retry_all else SKIP_MANUAL
    return SKIP_PERMANENT


def resume_state(failed_stage: str | None) -> ItemState:
    """Where a recovered order re-enters the pool: at the stage that failed.

    That stage reads the lineage's stored output of the stage before it (writing
    reads preflight's prompt, delivery the written article); the first stage, or
    an unknown one, starts the order from the beginning.
    """
    if failed_stage is None:
        return ItemState.PENDING
    stage: Stage = stage_named(failed_stage)
    return ItemState.PENDING if stage is STAGES[0] else stage.work_state


def plan_recovery(
    failed: Sequence[FailedItem], options: RecoveryOptions, not_failed: int = 0
) -> RecoveryPlan:
    """Decide which of a batch's failed items a recovery takes.

    Args:
        failed: the batch's failed items (all of them, or those ``order_ids`` names).
        options: the validated options.
        not_failed: how many named orders are not failed (delivered, cancelled).
    """
    named = options.order_ids is not None
    skipped: Counter[str] = Counter()
    if not_failed:
        skipped[SKIP_NOT_FAILED] = not_failed
    picks: list[Pick] = []
    for item in failed:
        reason = skip_reason(item, retry_all=options.retry_all, named=named)
        if reason is None:
            picks.append(Pick(item.item_id, item.order_id, resume_state(item.stage)))
        else:
            skipped[reason] += 1
    return RecoveryPlan(tuple(picks), dict(skipped))


def recovery_batch_id(root_batch_id: str, recovery_round: int) -> str:
    """The id of a lineage's ``recovery_round``-th recovery: ``<root>.r<round>``.

    Deterministic, so two racing recoveries of one round name the same batch (and
    the ledger's primary key admits one). A root id too long for the suffix is
    shortened and a hash of it kept, so distinct roots stay distinct.
    """
    suffix = f".r{recovery_round}"
    candidate = f"{root_batch_id}{suffix}"
    if len(candidate) <= _MAX_ID:
        return candidate
    digest = hashlib.sha256(root_batch_id.encode()).hexdigest()[:16]
    keep = _MAX_ID - len(suffix) - len(digest) - 1
    return f"{root_batch_id[:keep]}.{digest}{suffix}"
