"""What went wrong in a batch: the failure report, with the patterns its failures show.

Pure: no Celery, Redis or SQL. ``recovery.analysis`` aggregates the ledger in a
few queries into :class:`~pipeline.failure_facts.FailureFacts` (counts per
reason, per publisher and customer, failures per tenth of the run, the longest
run of neighbouring failed orders, orders that failed more than once across
recoveries, the first failed orders); :func:`analyse` turns them into the report
``analyze_batch_failures`` returns. Every pattern carries the figures it was
found from; the recommendations (``pipeline.failure_advice``) the figure that
triggered each and the ``batchline`` command that acts on it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, Literal

from pipeline.failure_advice import recommend
from pipeline.failure_facts import (
    DEFAULT_THRESHOLDS,
    TIME_BUCKETS,
    FailureFacts,
    GroupCount,
    Pattern,
    ReasonCount,
    Thresholds,
    fraction,
    percent,
    recoverability,
    sorted_counts,
)


def time_cluster(facts: FailureFacts, t: Thresholds) -> Pattern | None:
    """Most failures in one tenth of the run: an outage more likely than bad orders."""
    total = facts.total_failures
    if not facts.buckets or total < t.cluster_min or facts.run_seconds < t.cluster_min_run:
        return None
    busiest = max(facts.buckets, key=lambda bucket: bucket.failures)
    share = fraction(busiest.failures, total)
    if share < t.cluster_share:
        return None
    window = round(facts.run_seconds / TIME_BUCKETS, 1)
    return Pattern(
        "time_cluster",
        f"{busiest.failures} of {total} failures ({share:.0%}) happened within one"
        f" {window:g} s tenth of a {facts.run_seconds:.0f} s run",
        {
            "failures_in_window": busiest.failures,
            "total_failures": total,
            "share": share,
            "window_seconds": window,
            "run_seconds": round(facts.run_seconds, 1),
            "first_failure_at": busiest.first_at.isoformat(),
            "last_failure_at": busiest.last_at.isoformat(),
        },
    )


def _by_code(facts: FailureFacts) -> Counter[str]:
    counts: Counter[str] = Counter()
    for reason in facts.reasons:
        counts[reason.code] += reason.failures
    return counts


def recurring_reason(facts: FailureFacts, t: Thresholds) -> Pattern | None:
    """One reason code behind most failures: one root cause to investigate."""
    total = facts.total_failures
    by_code = _by_code(facts)
    if not by_code:
        return None
    code, count = next(iter(sorted_counts(by_code).items()))
    share = fraction(count, total)
    if count < t.recurring_min or share < t.recurring_share:
        return None
    reasons = [r for r in facts.reasons if r.code == code]
    stages = sorted({r.stage for r in reasons})
    return Pattern(
        "recurring_reason",
        f"{count} of {total} failures ({share:.0%}) share the reason {code} ({', '.join(stages)})",
        {
            "code": code,
            "failures": count,
            "total_failures": total,
            "share": share,
            "stages": stages,
            "error_classes": sorted({r.error_class for r in reasons}),
            "categories": sorted({str(r.category) for r in reasons}),
        },
    )


def dominant_group(
    kind: Literal["publisher", "customer"],
    groups: Iterable[GroupCount],
    facts: FailureFacts,
    t: Thresholds,
) -> Pattern | None:
    """One publisher (or customer) holding most failures, and failing more than the rest."""
    total = facts.total_failures
    top = max(groups, key=lambda g: (g.failures, g.key), default=None)
    if top is None or top.failures < t.dominant_min:
        return None
    share = fraction(top.failures, total)
    others_orders = facts.total_orders - top.orders
    others_rate = percent(total - top.failures, others_orders)
    rate = percent(top.failures, top.orders)
    # With every order of the batch it holds every failure too: that says nothing.
    if not others_orders or share < t.dominant_share or rate < t.dominant_ratio * others_rate:
        return None
    return Pattern(
        f"dominant_{kind}",
        f"{kind} {top.key} has {top.failures} of {total} failures ({share:.0%});"
        f" {rate:g} % of its {top.orders} orders failed, {others_rate:g} % of the others",
        {
            kind: top.key,
            "failures": top.failures,
            "total_failures": total,
            "share": share,
            "orders": top.orders,
            "failure_rate": rate,
            "others_orders": others_orders,
            "others_failure_rate": others_rate,
        },
    )


def consecutive_orders(facts: FailureFacts, t: Thresholds) -> Pattern | None:
    """A run of neighbouring orders failed: a slice of the manifest may be bad."""
    run = facts.longest_run
    if run is None or run.length < t.consecutive_min or facts.total_failures >= facts.total_orders:
        return None
    return Pattern(
        "consecutive_orders",
        f"{run.length} orders in a row failed, positions {run.first_position}"
        f"-{run.last_position} ({run.first_order} to {run.last_order})",
        {
            "run_length": run.length,
            "first_position": run.first_position,
            "last_position": run.last_position,
            "first_order": run.first_order,
            "last_order": run.last_order,
        },
    )


def find_patterns(facts: FailureFacts, t: Thresholds = DEFAULT_THRESHOLDS) -> list[Pattern]:
    """Every pattern the facts show, most telling first."""
    found = [
        recurring_reason(facts, t),
        dominant_group("publisher", facts.publishers, facts, t),
        dominant_group("customer", facts.customers, facts, t),
        time_cluster(facts, t),
        consecutive_orders(facts, t),
    ]
    return [pattern for pattern in found if pattern is not None]


# --- the report -------------------------------------------------------------------------


def _counts_by(facts: FailureFacts, key: Callable[[ReasonCount], str]) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for reason in facts.reasons:
        counts[key(reason)] += reason.failures
    return sorted_counts(counts)


def _failing_groups(groups: Iterable[GroupCount]) -> dict[str, int]:
    return sorted_counts(Counter({g.key: g.failures for g in groups if g.failures}))


def analyse(facts: FailureFacts, t: Thresholds = DEFAULT_THRESHOLDS) -> dict[str, Any]:
    """The failure report of one batch, JSON-ready (fields: docs/recovery.md)."""
    patterns = find_patterns(facts, t)
    needs = _counts_by(facts, lambda r: recoverability(r.category))
    return {
        "batch_id": facts.batch_id,
        "total_orders": facts.total_orders,
        "total_failures": facts.total_failures,
        "recoverable_count": needs.get("recoverable", 0),
        "manual_count": needs.get("manual", 0),
        "permanent_count": needs.get("permanent", 0),
        "error_rate": percent(facts.total_failures, facts.total_orders),
        "errors_by_type": _counts_by(facts, lambda r: r.error_class),
        "errors_by_code": _counts_by(facts, lambda r: r.code),
        "errors_by_category": _counts_by(facts, lambda r: str(r.category)),
        "by_stage": _counts_by(facts, lambda r: r.stage),
        "by_publisher": _failing_groups(facts.publishers),
        "by_customer": _failing_groups(facts.customers),
        "problematic_items": [item.to_json() for item in facts.problematic],
        "patterns": [pattern.to_json() for pattern in patterns],
        "recommendations": [r.to_json() for r in recommend(facts, patterns, t)],
        "failed_documents": [document.to_json() for document in facts.documents],
        "failed_documents_total": facts.total_failures,
    }
