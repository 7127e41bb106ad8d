"""The ``metrics:batch-waits:<batch_id>`` hash: retries, deferrals and limit waits of a batch.

What the ledger does not keep: a retry that later succeeded leaves no failed row,
a deferral leaves none at all, and the time a call slept for a ``conc=N`` slot or a
rate-limit token is inside the handler's duration. Workers count them per chunk
and add them in the chunk's one progress round trip (``metrics.progress.record_chunk``);
like the error buckets they are cheap and safe to lose (``BATCH_METRICS_TTL_DAYS``).

Fields (all integers, ``HINCRBY``):

- ``retry:<stage>:<code>``: runs retried, by the error's reason code;
- ``defer:<stage>:<cause>``: items deferred without spending an attempt, by cause:
  ``rate_limit`` (a 429 or the rate gate's ``max_wait``), ``circuit`` (bound for an
  open circuit), ``slots`` (no free concurrency slot: back to the pool);
- ``wait:<stage>:<kind>:n`` and ``wait:<stage>:<kind>:ms``: calls that slept for a
  ``conc=N`` call ``slot`` or a ``rate`` token, and the milliseconds they slept.

Both functions here are pure: :func:`chunk_fields` builds a chunk's increments,
:func:`fold_waits` turns the hash back into the report's figures.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Final

from pipeline.errors import ErrorCategory
from pipeline.outcomes import Deferred, ItemOutcome, Retry
from pipeline.stage_registry import STAGE_NAMES
from pipeline.wait_tally import WAIT_KINDS, WaitKind

#: Deferral causes, in the order a report lists them.
DEFER_CAUSES: Final = ("rate_limit", "circuit", "slots")


def chunk_fields(
    stage: str,
    outcomes: Sequence[ItemOutcome],
    unslotted: int,
    waits: Mapping[WaitKind, tuple[int, int]],
) -> dict[str, int]:
    """The hash increments of one chunk run (empty when nothing was retried, deferred or waited).

    ``waits``: kind -> (waits, milliseconds), as ``WaitTally.totals`` gives them.
    """
    fields: Counter[str] = Counter()
    for outcome in outcomes:
        if isinstance(outcome, Retry):
            if outcome.category == ErrorCategory.RATE_LIMIT:
                fields[f"defer:{stage}:rate_limit"] += 1
            else:
                fields[f"retry:{stage}:{outcome.code or 'unknown'}"] += 1
        elif isinstance(outcome, Deferred):
            fields[f"defer:{stage}:circuit"] += 1
    if unslotted:
        fields[f"defer:{stage}:slots"] += unslotted
    for kind, (count, ms) in waits.items():
        fields[f"wait:{stage}:{kind}:n"] += count
        fields[f"wait:{stage}:{kind}:ms"] += ms
    return dict(fields)


def _stage_order(stage: str) -> tuple[int, str]:
    order = STAGE_NAMES.index(stage) if stage in STAGE_NAMES else len(STAGE_NAMES)
    return order, stage


def fold_waits(raw: Mapping[str, str]) -> dict[str, Any]:
    """The report's ``retries``, ``deferrals`` and per-stage limit waits from the raw hash.

    Returns:
        ``{"retries": {"total", "by_code", "by_stage": {stage: {code: n}}},
        "deferrals": {"total", "by_cause", "by_stage": {stage: {cause: n}}},
        "limit_waits": {stage: {"slot_waits", "slot_wait_ms", "rate_waits",
        "rate_wait_ms"}}}``. Fields it does not know are ignored.
    """
    retries: dict[str, Counter[str]] = {}
    deferrals: dict[str, Counter[str]] = {}
    waits: dict[str, dict[str, int]] = {}
    for name, value in raw.items():
        kind, _, rest = name.partition(":")
        stage, _, detail = rest.partition(":")
        if not stage or not detail:
            continue
        if kind == "retry":
            retries.setdefault(stage, Counter())[detail] += int(value)
        elif kind == "defer":
            deferrals.setdefault(stage, Counter())[detail] += int(value)
        elif kind == "wait" and detail.count(":") == 1:
            wait_kind, unit = detail.split(":")
            if wait_kind in WAIT_KINDS and unit in ("n", "ms"):
                figures = waits.setdefault(stage, _no_waits())
                label = f"{wait_kind}_waits" if unit == "n" else f"{wait_kind}_wait_ms"
                figures[label] += int(value)
    return {
        "retries": _grouped(retries, "by_code"),
        "deferrals": _grouped(deferrals, "by_cause"),
        "limit_waits": {s: waits[s] for s in sorted(waits, key=_stage_order)},
    }


def _no_waits() -> dict[str, int]:
    return {f"{k}_{u}": 0 for k in WAIT_KINDS for u in ("waits", "wait_ms")}


def _grouped(per_stage: Mapping[str, Counter[str]], across: str) -> dict[str, Any]:
    overall: Counter[str] = Counter()
    for counts in per_stage.values():
        overall.update(counts)
    return {
        "total": sum(overall.values()),
        across: dict(sorted(overall.items(), key=lambda kv: (-kv[1], kv[0]))),
        "by_stage": {
            s: dict(sorted(per_stage[s].items())) for s in sorted(per_stage, key=_stage_order)
        },
    }
