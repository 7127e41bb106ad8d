"""Preflight: check an order before anything is written, and build the writer's prompt.

Each check is a small function returning a :class:`CheckResult`, so it can be
tested on its own. :func:`run_preflight` runs them all, records every result in
the preflight matrix and raises for the first failure, with the matrix in the
error's ``details``.

The order's own checks need nothing else. The catalog checks (publisher,
customer, duplicates, anchor profile, forbidden topics and terms) decide on a
:class:`~pipeline.history.PreflightContext` the shell loads; without one they
are skipped and the prompt uses default bounds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit

from pipeline.catalog import CustomerProfile, PublisherProfile
from pipeline.errors import (
    BatchlineError,
    CustomerSuspended,
    DuplicateOrder,
    InvalidInput,
    PolicyViolation,
)
from pipeline.history import PastOrder, PreflightContext
from pipeline.manifest import OrderDocument
from pipeline.stages.vocabulary import SUPPORTED_LANGUAGES, VOCABULARIES

#: Word bounds and link limit when no publisher says otherwise (preflight's prompt and QC).
DEFAULT_TARGET_WORDS: Final = 600
DEFAULT_MIN_WORDS: Final = 300
DEFAULT_MAX_WORDS: Final = 2000
DEFAULT_MAX_OUTBOUND_LINKS: Final = 3
#: The exact-anchor share is judged only once the window holds this many orders.
MIN_ORDERS_FOR_ANCHOR_SHARE: Final = 3
ANCHOR_MIN_CHARS: Final = 2
ANCHOR_MAX_CHARS: Final = 100

#: Anchors that say nothing about the target, in the languages we write.
GENERIC_ANCHORS: Final = frozenset(
    {
        "click here",
        "read more",
        "learn more",
        "here",
        "this site",
        "this website",
        "this page",
        "website",
        "link",
        "klicka här",
        "läs mer",
        "här",
        "hier",
        "hier klicken",
        "mehr erfahren",
        "weiterlesen",
    }
)

# A scheme or "www." makes an anchor a URL; a bare "name.tld" counts only with a
# common TLD, so that names such as "Node.js" are not taken for addresses.
_URL_WITH_PREFIX = re.compile(r"^(?:https?://|www\.)\S+$", re.IGNORECASE)
_BARE_DOMAIN = re.compile(
    r"^(?:[a-z0-9-]+\.)+(?:com|net|org|info|biz|io|co|eu|app|dev|shop|blog|se|nu|de|at|ch|uk|"
    r"dk|no|fi|nl|fr|es|it|us)(?:[/?#]\S*)?$",
    re.IGNORECASE,
)
# Second-level labels that are part of a country's public suffix (acme.co.uk).
_SUFFIX_LABELS: Final = frozenset({"co", "com", "org", "net", "ac", "gov", "edu"})
_BRAND_MIN_CHARS: Final = 3


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check, stored as ``{"passed": bool, "detail": str}``."""

    passed: bool
    detail: str

    def to_json(self) -> dict[str, Any]:
        """Return the result as stored in a stage's report."""
        return {"passed": self.passed, "detail": self.detail}


def _host(url: str) -> str | None:
    host = urlsplit(url).hostname
    return host.rstrip(".").lower() if host else None


def _without_www(host: str) -> str:
    return host.removeprefix("www.")


def check_target_url(target_url: str) -> CheckResult:
    """Pass when ``target_url`` is an http(s) URL with a host."""
    scheme = urlsplit(target_url).scheme.lower()
    if scheme not in {"http", "https"}:
        return CheckResult(False, f"target URL must use http or https, not {scheme or 'none'!r}")
    if not _host(target_url):
        return CheckResult(False, "target URL has no host")
    return CheckResult(True, f"{scheme} URL on {_host(target_url)}")


def check_target_domain(target_url: str, publisher_domain: str) -> CheckResult:
    """Pass unless the target is on the publisher's own domain.

    The same host, a subdomain of the publisher, or the domain the publisher is a
    subdomain of all count as the publisher's own site (a self-link is no backlink).
    """
    host = _host(target_url)
    if host is None:
        return CheckResult(False, "target URL has no host to compare")
    target, publisher = _without_www(host), _without_www(publisher_domain.lower())
    related = (
        target == publisher or target.endswith(f".{publisher}") or publisher.endswith(f".{target}")
    )
    if related:
        return CheckResult(False, f"target {host} is on the publisher's own domain {publisher}")
    return CheckResult(True, f"target {host} is not on {publisher}")


def check_anchor_text(anchor_text: str) -> CheckResult:
    """Pass when the anchor has 2-100 characters and no angle brackets."""
    length = len(anchor_text)
    if not ANCHOR_MIN_CHARS <= length <= ANCHOR_MAX_CHARS:
        return CheckResult(
            False,
            f"anchor text has {length} characters; {ANCHOR_MIN_CHARS}-{ANCHOR_MAX_CHARS} allowed",
        )
    if "<" in anchor_text or ">" in anchor_text:
        return CheckResult(False, "anchor text must not contain '<' or '>'")
    return CheckResult(True, f"{length} characters")


def looks_like_url(text: str) -> bool:
    """Return whether ``text`` reads as a web address (a naked-URL anchor)."""
    text = text.strip()
    return bool(_URL_WITH_PREFIX.match(text) or _BARE_DOMAIN.match(text))


def _url_host(text: str) -> str | None:
    text = text.strip()
    return _host(text if "://" in text else f"http://{text}")


def check_anchor_url(anchor_text: str, target_url: str) -> CheckResult:
    """Pass unless the anchor is a bare URL pointing at another host than the target.

    A URL anchor that names a different site misleads the reader about where the
    link goes, so it breaks the anchor policy.
    """
    if not looks_like_url(anchor_text):
        return CheckResult(True, "anchor is not a URL")
    anchor_host, target_host = _url_host(anchor_text), _host(target_url)
    if anchor_host and target_host and _without_www(anchor_host) == _without_www(target_host):
        return CheckResult(True, f"URL anchor names the target host {target_host}")
    return CheckResult(False, f"URL anchor names {anchor_host}, but the link goes to {target_host}")


def check_language(language: str) -> CheckResult:
    """Pass when the writer has a vocabulary for ``language``."""
    supported = ", ".join(SUPPORTED_LANGUAGES)
    if language not in VOCABULARIES:
        return CheckResult(False, f"no writer for language {language!r} (supported: {supported})")
    return CheckResult(True, f"{language} ({VOCABULARIES[language].name})")


def check_deadline(deadline: datetime | None, now: datetime) -> CheckResult:
    """Always pass; a deadline already past is recorded, since late work is still wanted."""
    if deadline is None:
        return CheckResult(True, "no deadline")
    if deadline <= now:
        return CheckResult(
            True, f"deadline {deadline.isoformat()} already past; recorded, not an error"
        )
    return CheckResult(True, f"due {deadline.isoformat()}")


def _squash(text: str) -> str:
    return "".join(character for character in text.casefold() if character.isalnum())


def brand_label(target_url: str) -> str | None:
    """Return the target host's second-level label (``acme`` for www.acme.co.uk)."""
    host = _host(target_url)
    if host is None:
        return None
    labels = host.split(".")
    if len(labels) < 2:
        return labels[0]
    if len(labels) >= 3 and labels[-2] in _SUFFIX_LABELS:
        return labels[-3]
    return labels[-2]


def _is_branded(anchor_text: str, target_url: str) -> bool:
    label = _squash(brand_label(target_url) or "")
    # Very short labels match inside ordinary words too often to mean a brand.
    return len(label) >= _BRAND_MIN_CHARS and label in _squash(anchor_text)


def _normalised(text: str) -> str:
    return " ".join(text.casefold().split())


def classify_anchor(anchor_text: str, target_url: str, topic: str) -> str:
    """Classify the anchor as naked_url, generic, branded, exact or partial.

    ``exact`` means the anchor is the order's topic; any other descriptive
    anchor is ``partial``.
    """
    if looks_like_url(anchor_text):
        return "naked_url"
    if _normalised(anchor_text).strip(" .!?:") in GENERIC_ANCHORS:
        return "generic"
    if _is_branded(anchor_text, target_url):
        return "branded"
    if _normalised(anchor_text) == _normalised(topic):
        return "exact"
    return "partial"


# --- catalog checks: publisher, customer, history -------------------------------------


def check_publisher_known(domain: str, publisher: PublisherProfile | None) -> CheckResult:
    """Pass when the catalog has the order's publisher."""
    if publisher is None:
        return CheckResult(False, f"unknown publisher {domain}")
    return CheckResult(True, f"publisher {publisher.domain} is in the catalog")


def check_publisher_language(language: str, publisher: PublisherProfile | None) -> CheckResult:
    """Pass when the publisher accepts articles in ``language``."""
    if publisher is None:
        return CheckResult(False, "no publisher to accept the language")
    if language not in publisher.languages:
        accepted = ", ".join(publisher.languages)
        return CheckResult(
            False,
            f"publisher {publisher.domain} does not accept language {language} (only {accepted})",
        )
    return CheckResult(True, f"{publisher.domain} accepts {language}")


def check_customer_known(customer_id: str, customer: CustomerProfile | None) -> CheckResult:
    """Pass when the catalog has the order's customer."""
    if customer is None:
        return CheckResult(False, f"unknown customer {customer_id}")
    return CheckResult(True, f"customer {customer.customer_id} ({customer.tier})")


def check_customer_active(customer: CustomerProfile | None) -> CheckResult:
    """Pass unless the customer is suspended."""
    if customer is None:
        return CheckResult(False, "no customer to check")
    if customer.suspended:
        return CheckResult(False, f"customer {customer.customer_id} is suspended")
    return CheckResult(True, f"customer {customer.customer_id} is active")


def check_forbidden_topic(topic: str, publisher: PublisherProfile | None) -> CheckResult:
    """Pass unless the topic names one of the publisher's forbidden topics."""
    if publisher is None:
        return CheckResult(False, "no publisher to ask")
    forbidden = publisher.forbidden_topic_in(topic)
    if forbidden is not None:
        return CheckResult(
            False, f"topic {topic!r} names {forbidden!r}, which {publisher.domain} does not publish"
        )
    return CheckResult(True, f"{publisher.domain} publishes {topic!r}")


def check_anchor_terms(anchor_text: str, publisher: PublisherProfile | None) -> CheckResult:
    """Pass unless the anchor holds a term the publisher forbids.

    The writer must use the anchor verbatim, so no rewrite could remove the term:
    refusing here saves writing an article that QC would have to reject.
    """
    if publisher is None:
        return CheckResult(False, "no publisher to ask")
    forbidden = publisher.forbidden_term_in(anchor_text)
    if forbidden is not None:
        return CheckResult(
            False, f"anchor text holds {forbidden!r}, a term {publisher.domain} forbids"
        )
    return CheckResult(True, "anchor text holds no forbidden term")


def find_duplicates(order: OrderDocument, context: PreflightContext) -> tuple[PastOrder, ...]:
    """Return earlier orders of the same customer, target URL and publisher in the window."""
    earlier = context.earlier_orders(
        customer_id=order.customer_id,
        target_url=str(order.target_url),
        window_days=context.rules.duplicate_window_days,
    )
    return tuple(past for past in earlier if past.publisher_domain == order.publisher_domain)


def check_duplicates(duplicates: Sequence[PastOrder], window_days: int) -> CheckResult:
    """Pass when no earlier order has the same customer, target URL and publisher."""
    if not duplicates:
        return CheckResult(True, f"no same order in the last {window_days} days")
    first = duplicates[0]
    return CheckResult(
        False,
        f"same customer, target and publisher as {first.describe()}"
        f" of {first.created_at:%Y-%m-%d %H:%M} (within {window_days} days)",
    )


@dataclass(frozen=True)
class AnchorProfile:
    """A customer's anchors for one target in the window, this order included."""

    window_days: int
    orders: int
    exact: int
    limit: float

    @property
    def exact_share(self) -> float:
        """Share of exact-match anchors, this order counted."""
        return self.exact / self.orders if self.orders else 0.0

    def to_json(self) -> dict[str, Any]:
        """Return the profile as stored in the preflight matrix."""
        return {
            "window_days": self.window_days,
            "orders": self.orders,
            "exact": self.exact,
            "exact_share": round(self.exact_share, 4),
            "limit": self.limit,
        }


def anchor_profile(
    order: OrderDocument, anchor_class: str, context: PreflightContext
) -> AnchorProfile:
    """Count the customer's exact-match anchors for the order's target, this one included."""
    window = context.rules.anchor_window_days
    earlier = context.earlier_orders(
        customer_id=order.customer_id, target_url=str(order.target_url), window_days=window
    )
    exact = sum(
        classify_anchor(past.anchor_text, past.target_url, past.topic) == "exact"
        for past in earlier
    )
    return AnchorProfile(
        window_days=window,
        orders=len(earlier) + 1,
        exact=exact + (anchor_class == "exact"),
        limit=context.rules.exact_anchor_max_share,
    )


def check_anchor_profile(profile: AnchorProfile, anchor_class: str) -> CheckResult:
    """Pass unless this exact-match anchor lifts the exact share above the limit.

    The share is judged only from :data:`MIN_ORDERS_FOR_ANCHOR_SHARE` orders on:
    with one or two orders a single exact anchor is already half of them, so a
    customer's first exact anchor for a target would always be refused.
    """
    share = f"{profile.exact} of {profile.orders} exact ({profile.exact_share:.0%})"
    if anchor_class != "exact":
        return CheckResult(True, f"{anchor_class} anchor; {share}")
    if profile.orders < MIN_ORDERS_FOR_ANCHOR_SHARE:
        return CheckResult(True, f"{share}; not judged below {MIN_ORDERS_FOR_ANCHOR_SHARE} orders")
    if profile.exact_share > profile.limit:
        return CheckResult(
            False,
            f"{share} for this target in {profile.window_days} days;"
            f" at most {profile.limit:.0%} allowed",
        )
    return CheckResult(True, f"{share}; at most {profile.limit:.0%} allowed")


def publisher_fit(
    order: OrderDocument, publisher: PublisherProfile | None
) -> dict[str, Any] | None:
    """How well the order suits the publisher: language accepted, topic overlap (0-1)."""
    if publisher is None:
        return None
    return {
        "language_accepted": order.language in publisher.languages,
        "topic_overlap": publisher.topic_overlap(order.topic),
    }


# --- the prompt ---------------------------------------------------------------------------

_ANCHOR_GUIDELINES: Final[dict[str, str]] = {
    "naked_url": "The anchor is a web address; present it as a source reference.",
    "generic": "The anchor is generic; make the sentence around it say what the reader finds.",
    "branded": "The anchor is a brand; mention it as a source, not as an advertisement.",
    "exact": "The anchor is the topic itself; work it into a sentence about the topic.",
    "partial": "Work the anchor into a sentence that fits the topic.",
}


@dataclass(frozen=True)
class _Limits:
    """What the publisher allows (or the defaults without one)."""

    min_words: int = DEFAULT_MIN_WORDS
    max_words: int = DEFAULT_MAX_WORDS
    target_words: int = DEFAULT_TARGET_WORDS
    max_outbound_links: int = DEFAULT_MAX_OUTBOUND_LINKS
    forbidden_terms: tuple[str, ...] = ()
    guidelines: tuple[str, ...] = ()

    @classmethod
    def of(cls, publisher: PublisherProfile | None) -> _Limits:
        if publisher is None:
            return cls()
        return cls(
            min_words=publisher.min_words,
            max_words=publisher.max_words,
            # The middle of the bounds leaves the writer's +-10% inside them.
            target_words=(publisher.min_words + publisher.max_words) // 2,
            max_outbound_links=publisher.max_outbound_links,
            forbidden_terms=publisher.forbidden_terms,
            guidelines=publisher.guidelines,
        )


def _guidelines(order: OrderDocument, anchor_class: str, limits: _Limits) -> list[str]:
    target_url = str(order.target_url)
    lines = [
        f"Write in {VOCABULARIES[order.language].name} ({order.language}).",
        f"Aim for about {limits.target_words} words ({limits.min_words}-{limits.max_words})"
        " under a title and 2-4 subheadings.",
        f"Link to {target_url} exactly once, with the anchor text exactly as given.",
        f"Use at most {limits.max_outbound_links} outbound links in all, the backlink included.",
        "Keep an informative tone; no promotional claims or calls to action.",
        _ANCHOR_GUIDELINES[anchor_class],
    ]
    if limits.forbidden_terms:
        lines.append(f"Never use these terms: {', '.join(limits.forbidden_terms)}.")
    return [*lines, *limits.guidelines]


def build_prompt(
    order: OrderDocument, anchor_class: str, publisher: PublisherProfile | None = None
) -> dict[str, Any]:
    """Return the writer's prompt for ``order`` (JSON-ready).

    Args:
        order: The order.
        anchor_class: What :func:`classify_anchor` said of its anchor.
        publisher: Its publisher, whose word bounds, link limit, forbidden terms and
            guidelines the prompt carries; without one the defaults apply.
    """
    limits = _Limits.of(publisher)
    return {
        "topic": order.topic,
        "language": order.language,
        "min_words": limits.min_words,
        "max_words": limits.max_words,
        "target_words": limits.target_words,
        "max_outbound_links": limits.max_outbound_links,
        "forbidden_terms": list(limits.forbidden_terms),
        "anchor_text": order.anchor_text,
        "target_url": str(order.target_url),
        "tone": "informative",
        "publisher_domain": order.publisher_domain,
        "guidelines": _guidelines(order, anchor_class, limits),
    }


# --- the whole stage ------------------------------------------------------------------------

# Check name -> (the check, the error its failure raises), in the order they run.
_Check = Callable[[OrderDocument, datetime], CheckResult]
_CHECKS: Final[dict[str, tuple[_Check, type[BatchlineError]]]] = {
    "target_url": (lambda order, _: check_target_url(str(order.target_url)), InvalidInput),
    "target_domain": (
        lambda order, _: check_target_domain(str(order.target_url), order.publisher_domain),
        InvalidInput,
    ),
    "anchor_text": (lambda order, _: check_anchor_text(order.anchor_text), InvalidInput),
    "anchor_url": (
        lambda order, _: check_anchor_url(order.anchor_text, str(order.target_url)),
        PolicyViolation,
    ),
    "language": (lambda order, _: check_language(order.language), InvalidInput),
    "deadline": (lambda order, now: check_deadline(order.deadline, now), InvalidInput),
}

#: The error each catalog check's failure raises, in the order they run.
_CATALOG_ERRORS: Final[dict[str, type[BatchlineError]]] = {
    "publisher_known": InvalidInput,
    "publisher_language": InvalidInput,
    "customer_known": InvalidInput,
    "customer_active": CustomerSuspended,
    "duplicate": DuplicateOrder,
    "anchor_profile": PolicyViolation,
    "forbidden_topic": PolicyViolation,
    "anchor_terms": PolicyViolation,
}


def _catalog_checks(
    order: OrderDocument, anchor_class: str, context: PreflightContext
) -> tuple[dict[str, CheckResult], dict[str, Any]]:
    """Run the catalog checks; return their results and the matrix facts they rest on."""
    publisher, rules = context.publisher, context.rules
    duplicates = find_duplicates(order, context)
    profile = anchor_profile(order, anchor_class, context)
    results = {
        "publisher_known": check_publisher_known(order.publisher_domain, publisher),
        "publisher_language": check_publisher_language(order.language, publisher),
        "customer_known": check_customer_known(order.customer_id, context.customer),
        "customer_active": check_customer_active(context.customer),
        "duplicate": check_duplicates(duplicates, rules.duplicate_window_days),
        "anchor_profile": check_anchor_profile(profile, anchor_class),
        "forbidden_topic": check_forbidden_topic(order.topic, publisher),
        "anchor_terms": check_anchor_terms(order.anchor_text, publisher),
    }
    facts = {
        "publisher_fit": publisher_fit(order, publisher),
        "anchor_profile": profile.to_json(),
        "duplicates": [past.item_id for past in duplicates],
    }
    return results, facts


def run_preflight(
    order: OrderDocument,
    context: PreflightContext | None = None,
    *,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Check ``order`` and build the writer's prompt: the preflight matrix.

    Args:
        order: The validated order.
        context: Its customer, publisher and recent orders; ``None`` skips the
            catalog checks (and the prompt uses default bounds).
        now: The current time when there is no context; defaults to the clock.

    Raises:
        InvalidInput: the target URL, its domain, the anchor text or the language is
            wrong, there is no writer for the language, or the publisher or customer
            is unknown or the publisher does not take the language.
        PolicyViolation: a URL anchor names another site, too many exact anchors,
            a forbidden topic or a forbidden term in the anchor.
        CustomerSuspended: the customer is suspended.
        DuplicateOrder: the same customer, target and publisher were ordered before.

    Returns:
        ``{"checks": {name: {"passed", "detail"}}, "publisher_fit", "anchor_class",
        "anchor_profile", "duplicates", "prompt"}``; without a context
        ``publisher_fit`` and ``anchor_profile`` are ``None``.
    """
    moment = context.now if context is not None else (now or datetime.now(UTC))
    anchor_class = classify_anchor(order.anchor_text, str(order.target_url), order.topic)
    results = {name: check(order, moment) for name, (check, _) in _CHECKS.items()}
    raises = {name: error for name, (_, error) in _CHECKS.items()}
    facts: dict[str, Any] = {"publisher_fit": None, "anchor_profile": None, "duplicates": []}
    if context is not None:
        catalog_results, facts = _catalog_checks(order, anchor_class, context)
        results.update(catalog_results)
        raises.update(_CATALOG_ERRORS)
    matrix: dict[str, Any] = {
        "checks": {name: result.to_json() for name, result in results.items()},
        "publisher_fit": facts["publisher_fit"],
        "anchor_class": anchor_class,
        "anchor_profile": facts["anchor_profile"],
        "duplicates": facts["duplicates"],
    }
    failed = next((name for name, result in results.items() if not result.passed), None)
    if failed is not None:
        raise raises[failed](f"{failed}: {results[failed].detail}", details=matrix, code=failed)
    publisher = context.publisher if context is not None else None
    return {**matrix, "prompt": build_prompt(order, anchor_class, publisher)}
