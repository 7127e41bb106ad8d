"""Preflight: check an order before anything is written, and build the writer's prompt.

Each check is a small function returning a :class:`CheckResult`, so it can be
tested on its own. :func:`run_preflight` runs them all, records every result and
raises for the first failure, with the whole report in the error's ``details``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit

from pipeline.errors import BatchlineError, InvalidInput, PolicyViolation
from pipeline.manifest import OrderDocument
from pipeline.stages.vocabulary import SUPPORTED_LANGUAGES, VOCABULARIES

DEFAULT_TARGET_WORDS: Final = 600
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
        return CheckResult(
            False, f"language {language!r} is not supported by the writer ({supported})"
        )
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


_ANCHOR_GUIDELINES: Final[dict[str, str]] = {
    "naked_url": "The anchor is a web address; present it as a source reference.",
    "generic": "The anchor is generic; make the sentence around it say what the reader finds.",
    "branded": "The anchor is a brand; mention it as a source, not as an advertisement.",
    "exact": "The anchor is the topic itself; work it into a sentence about the topic.",
    "partial": "Work the anchor into a sentence that fits the topic.",
}


def build_prompt(order: OrderDocument, anchor_class: str) -> dict[str, Any]:
    """Return the writer's prompt for ``order`` (JSON-ready)."""
    target_url = str(order.target_url)
    language_name = VOCABULARIES[order.language].name
    return {
        "topic": order.topic,
        "language": order.language,
        "target_words": DEFAULT_TARGET_WORDS,
        "anchor_text": order.anchor_text,
        "target_url": target_url,
        "tone": "informative",
        "publisher_domain": order.publisher_domain,
        "guidelines": [
            f"Write in {language_name} ({order.language}).",
            f"Aim for about {DEFAULT_TARGET_WORDS} words under a title and 2-4 subheadings.",
            f"Link to {target_url} exactly once, with the anchor text exactly as given.",
            "Keep an informative tone; no promotional claims or calls to action.",
            _ANCHOR_GUIDELINES[anchor_class],
        ],
    }


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


def run_preflight(order: OrderDocument, *, now: datetime | None = None) -> dict[str, Any]:
    """Check ``order`` and build the writer's prompt.

    Args:
        order: The validated order.
        now: The current time (for the deadline check); defaults to the clock.

    Raises:
        InvalidInput: the target URL, its domain, the anchor text or the language is wrong.
        PolicyViolation: the anchor is a URL naming another site than the target.

    Returns:
        ``{"checks": {name: {"passed", "detail"}}, "anchor_class", "prompt"}``.
    """
    moment = now or datetime.now(UTC)
    results = {name: check(order, moment) for name, (check, _) in _CHECKS.items()}
    checks = {name: result.to_json() for name, result in results.items()}
    anchor_class = classify_anchor(order.anchor_text, str(order.target_url), order.topic)
    for name, result in results.items():
        if not result.passed:
            error = _CHECKS[name][1]
            details = {"checks": checks, "anchor_class": anchor_class}
            raise error(f"{name}: {result.detail}", details=details)
    return {
        "checks": checks,
        "anchor_class": anchor_class,
        "prompt": build_prompt(order, anchor_class),
    }
