"""Recommendations from a batch's failures: what to do, why, and the command that does it.

Pure: no Celery, Redis or SQL. Each rule reads the aggregated facts (and the
patterns found in them) and either stays silent or recommends one thing, with
the figure that triggered it and a ``batchline`` command: the guide's seven
kinds (high error rate, timeouts, rate limits, invalid input, network, a
recurring error, recovery) and ours (the catalog, QC, manual fixes, a dominant
publisher or customer).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal

from pipeline.errors import ErrorCategory
from pipeline.failure_facts import (
    DEFAULT_THRESHOLDS,
    FailureFacts,
    Pattern,
    ReasonCount,
    Thresholds,
    percent,
    recoverability,
    sorted_counts,
)

#: Codes of a call that ran out of time -> the setting that bounds it.
TIMEOUT_SETTINGS: Final[dict[str, str]] = {
    "webhook_timeout": "DELIVERY_TIMEOUT_SECONDS",
    "writer_timeout": "WRITER_TIMEOUT_SECONDS",
    "timeout_error": "BATCH_TASK_SOFT_TIME_LIMIT",
}
#: Codes that say the catalog is wrong or incomplete (fixed with ``batchline catalog import``).
CATALOG_CODES: Final = frozenset(
    {
        "publisher_known",
        "publisher_language",
        "customer_known",
        "publisher_endpoint_missing",
        "publisher_profile_invalid",
    }
)
#: Error classes preflight raises for an order that is wrong as submitted.
INPUT_CLASSES: Final = frozenset(
    {"InvalidInput", "PolicyViolation", "DuplicateOrder", "CustomerSuspended"}
)


# --- recommendations --------------------------------------------------------------------


@dataclass(frozen=True)
class Recommendation:
    """What to do, the figure that says so, and the command that does it."""

    kind: str
    message: str
    trigger: dict[str, Any]
    command: str

    def to_json(self) -> dict[str, Any]:
        """As reported in ``recommendations``."""
        return {
            "kind": self.kind,
            "message": self.message,
            "trigger": self.trigger,
            "command": self.command,
        }


@dataclass(frozen=True)
class _Findings:
    """What the recommendation rules read: the facts, their sums and the patterns."""

    facts: FailureFacts
    thresholds: Thresholds
    patterns: dict[str, Pattern]

    @property
    def batch_id(self) -> str:
        return self.facts.batch_id

    def failures_where(self, keep: Callable[[ReasonCount], bool]) -> Counter[str]:
        """Failures per code among the reasons ``keep`` selects."""
        counts: Counter[str] = Counter()
        for reason in self.facts.reasons:
            if keep(reason):
                counts[reason.code] += reason.failures
        return counts

    def by_recoverability(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for reason in self.facts.reasons:
            counts[recoverability(reason.category)] += reason.failures
        return counts

    def example(self, codes: Iterable[str] = ()) -> str | None:
        """The first failed order (of ``codes``, when given): the one to look at."""
        wanted = set(codes)
        for document in self.facts.documents:
            if not wanted or document.code in wanted:
                return document.order_id
        return None

    def publishers_of(self, codes: Iterable[str]) -> dict[str, int]:
        """Publishers of the listed failed orders with ``codes``."""
        wanted = set(codes)
        counts = Counter(d.publisher_domain for d in self.facts.documents if d.code in wanted)
        return sorted_counts(counts)

    def inspect(self, codes: Iterable[str] = ()) -> str:
        """The command that shows one failed order's whole journey."""
        order = self.example(codes)
        if order is None:
            return f"batchline failures {self.batch_id} --json"
        return f"batchline order {order} --batch {self.batch_id}"


def _listed(counts: Counter[str]) -> str:
    return ", ".join(f"{code} {n}" for code, n in sorted_counts(counts).items())


def _high_error_rate(f: _Findings) -> Recommendation | None:
    rate = percent(f.facts.total_failures, f.facts.total_orders)
    if rate <= f.thresholds.high_error_rate:
        return None
    passing = f.by_recoverability()["recoverable"] * 2 >= f.facts.total_failures
    # Mostly transient failures point at a service, not at the orders themselves.
    advice = (
        "make sure their common cause is over before recovering"
        if passing
        else "review the input data before recovering anything"
    )
    return Recommendation(
        "high_error_rate",
        f"{rate:g} % of the batch's orders failed (over {f.thresholds.high_error_rate:g} %):"
        f" {advice}",
        {"error_rate": rate, "threshold": f.thresholds.high_error_rate},
        f.inspect(),
    )


def _recurring(f: _Findings) -> Recommendation | None:
    pattern = f.patterns.get("recurring_reason")
    if pattern is None:
        return None
    code = pattern.evidence["code"]
    return Recommendation(
        "recurring_reason",
        f"{pattern.summary}: investigate that one root cause first",
        {k: pattern.evidence[k] for k in ("code", "failures", "share")},
        f.inspect([code]),
    )


def _dominant(f: _Findings, kind: Literal["publisher", "customer"]) -> Recommendation | None:
    pattern = f.patterns.get(f"dominant_{kind}")
    if pattern is None:
        return None
    where = "catalog entry and webhook endpoint" if kind == "publisher" else "catalog entry"
    return Recommendation(
        f"dominant_{kind}",
        f"{pattern.summary}: check its {where}",
        {k: pattern.evidence[k] for k in (kind, "failures", "share", "failure_rate")},
        "batchline catalog show",
    )


def _timeouts(f: _Findings) -> Recommendation | None:
    counts = f.failures_where(lambda r: r.code in TIMEOUT_SETTINGS)
    if not counts:
        return None
    settings = sorted({TIMEOUT_SETTINGS[code] for code in counts})
    return Recommendation(
        "timeouts",
        f"{counts.total()} failures timed out ({_listed(counts)}): if the service is only"
        f" slow, raise {' / '.join(settings)}, then recover them",
        {"failures": counts.total(), "codes": sorted_counts(counts), "settings": settings},
        f"batchline recover {f.batch_id}",
    )


def _is_network(reason: ReasonCount) -> bool:
    code = reason.code
    server_error = "_status_5" in code and code[-3:].isdigit()
    return server_error or code.endswith("_unreachable") or code == "connection_error"


def _network(f: _Findings) -> Recommendation | None:
    counts = f.failures_where(_is_network)
    if not counts:
        return None
    publishers = f.publishers_of(counts)
    named = f" at {', '.join(publishers)}" if publishers else ""
    return Recommendation(
        "network",
        f"{counts.total()} failures could not reach a service or got a server error"
        f"{named} ({_listed(counts)}): check connectivity and the endpoint, then recover",
        {"failures": counts.total(), "codes": sorted_counts(counts), "publishers": publishers},
        f"batchline recover {f.batch_id}",
    )


def _rate_limits(f: _Findings) -> Recommendation | None:
    counts = f.failures_where(lambda r: r.category is ErrorCategory.RATE_LIMIT)
    if not counts:
        return None
    return Recommendation(
        "rate_limits",
        f"{counts.total()} failures were rate limited ({_listed(counts)}): lower"
        " BATCH_RATE_LIMITS or the concurrency caps, and recover in the low lane",
        {"failures": counts.total(), "codes": sorted_counts(counts)},
        f"batchline recover {f.batch_id} --priority low",
    )


def _catalog(f: _Findings) -> Recommendation | None:
    counts = f.failures_where(lambda r: r.code in CATALOG_CODES)
    if not counts:
        return None
    refused = [
        d.order_id
        for d in f.facts.documents
        if d.code in CATALOG_CODES and recoverability(d.category) == "permanent"
    ]
    # PERMANENT failures are only recovered when named; MANUAL ones come with --all.
    named = "".join(f" --order {order}" for order in refused)
    return Recommendation(
        "catalog",
        f"{counts.total()} failures point at the catalog ({_listed(counts)}): correct it,"
        " then recover those orders",
        {"failures": counts.total(), "codes": sorted_counts(counts)},
        f"batchline catalog import CATALOG_FILE && batchline recover {f.batch_id} --all{named}",
    )


def _invalid_input(f: _Findings) -> Recommendation | None:
    counts = f.failures_where(
        lambda r: r.error_class in INPUT_CLASSES and r.code not in CATALOG_CODES
    )
    if not counts:
        return None
    return Recommendation(
        "invalid_input",
        f"{counts.total()} orders were refused as submitted ({_listed(counts)}): check the"
        " input format and policy, correct them and submit them again",
        {"failures": counts.total(), "codes": sorted_counts(counts)},
        f.inspect(counts),
    )


def _quality(f: _Findings) -> Recommendation | None:
    counts = f.failures_where(lambda r: r.error_class == "QualityRejected")
    if not counts:
        return None
    return Recommendation(
        "quality",
        f"QC rejected {counts.total()} articles after their rewrites ({_listed(counts)}):"
        " compare the publishers' bounds and rules with what the orders ask for",
        {"failures": counts.total(), "codes": sorted_counts(counts)},
        "batchline catalog show",
    )


def _manual(f: _Findings) -> Recommendation | None:
    counts = f.failures_where(lambda r: recoverability(r.category) == "manual")
    if not counts:
        return None
    return Recommendation(
        "manual",
        f"{counts.total()} failures need an operator ({_listed(counts)}): fix the"
        " configuration or data they name, then recover them with --all",
        {"manual_count": counts.total(), "codes": sorted_counts(counts)},
        f"batchline recover {f.batch_id} --all",
    )


def _recoverable(f: _Findings) -> Recommendation | None:
    counts = f.failures_where(lambda r: recoverability(r.category) == "recoverable")
    if not counts:
        return None
    return Recommendation(
        "recover",
        f"{counts.total()} failures were transient ({_listed(counts)}): recover them once"
        " their cause is over",
        {"recoverable_count": counts.total(), "codes": sorted_counts(counts)},
        f"batchline recover {f.batch_id}",
    )


#: The rules, in the order their advice is reported: the cause before the cure.
RULES: Final[tuple[Callable[[_Findings], Recommendation | None], ...]] = (
    _high_error_rate,
    _recurring,
    lambda f: _dominant(f, "publisher"),
    lambda f: _dominant(f, "customer"),
    _timeouts,
    _network,
    _rate_limits,
    _catalog,
    _invalid_input,
    _quality,
    _manual,
    _recoverable,
)


def recommend(
    facts: FailureFacts, patterns: Iterable[Pattern], t: Thresholds = DEFAULT_THRESHOLDS
) -> list[Recommendation]:
    """Every recommendation the facts and patterns call for."""
    findings = _Findings(facts, t, {pattern.kind: pattern for pattern in patterns})
    made = (rule(findings) for rule in RULES)
    return [recommendation for recommendation in made if recommendation is not None]
