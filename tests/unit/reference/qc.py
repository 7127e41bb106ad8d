"""Quality control: read the article as a browser would and check it against the order.

Each check is a small pure function returning a :class:`QcResult`, so it can be
tested on its own. :func:`run_qc` runs them all, builds one report and raises
:class:`~pipeline.errors.QualityRejected` for the first failure, with the whole
report (including whether a rewrite could fix it, and what to tell the writer)
in the error's ``details``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import py3langid

from pipeline.catalog import PublisherProfile
from pipeline.errors import QualityRejected, RewriteNeeded
from pipeline.manifest import OrderDocument

# Re-exported: writers check their own drafts with the same parser as QC.
from pipeline.stages.html_article import Link as Link
from pipeline.stages.html_article import normalise_url as normalise_url
from pipeline.stages.html_article import parse_article as parse_article
from pipeline.stages.preflight import (
    DEFAULT_MAX_OUTBOUND_LINKS,
    DEFAULT_MAX_WORDS,
    DEFAULT_MIN_WORDS,
)
from tests.unit.reference.readability import lix
from tests.unit.reference.similarity import max_similarity, minhash_signature, normalised_words


@dataclass(frozen=True)
class QcRules:
    """QC's thresholds; the publisher's profile, when given, overrides the first three.

    The LIX bounds are wide on purpose: the offline writer scores 30-47 in en, sv
    and de, and ordinary prose 25-55; below 20 reads like a list of fragments,
    above 60 like legal text.
    """

    # One set of defaults for preflight's prompt and QC's verdict, so they cannot drift.
    min_words: int = DEFAULT_MIN_WORDS
    max_words: int = DEFAULT_MAX_WORDS
    max_outbound_links: int = DEFAULT_MAX_OUTBOUND_LINKS
    min_lix: float = 20.0
    max_lix: float = 60.0
    near_duplicate_threshold: float = 0.8
    max_keyword_density: float = 0.06
    language_min_words: int = 50


@dataclass(frozen=True)
class QcResult:
    """One check's outcome; ``feedback`` tells the writer what to change when it failed."""

    passed: bool
    detail: str
    rewritable: bool = True
    feedback: str = ""

    def to_json(self) -> dict[str, Any]:
        """Return the result as stored in the report."""
        return {"passed": self.passed, "detail": self.detail, "rewritable": self.rewritable}


@dataclass(frozen=True)
class ArticleFacts:
    """What the checks read from an article, measured once."""

    title: str
    text: str
    links: list[Link]
    word_count: int
    lix: float
    language: str
    signature: list[int]

    @classmethod
    def from_html(cls, fragment: str) -> ArticleFacts:
        """Parse ``fragment`` and measure its visible text."""
        parsed = parse_article(fragment)
        text = parsed.text
        return cls(
            title=parsed.title,
            text=text,
            links=parsed.links,
            word_count=len(text.split()),
            lix=round(lix(text), 2),
            language=detect_language(text),
            signature=minhash_signature(text),
        )


def detect_language(text: str) -> str:
    """Return the ISO 639-1 code py3langid reads ``text`` as (offline, bundled model)."""
    language, _score = py3langid.classify(" ".join(text.split()))
    return str(language)


def _phrase_pattern(phrase: str) -> re.Pattern[str]:
    """Match ``phrase`` as whole words, case-insensitively, any whitespace between its words."""
    body = r"\s+".join(re.escape(part) for part in phrase.casefold().split())
    return re.compile(rf"(?<!\w){body}(?!\w)")


def _found_phrases(text: str, phrases: Sequence[str]) -> list[str]:
    folded = text.casefold()
    return [
        phrase for phrase in phrases if phrase.strip() and _phrase_pattern(phrase).search(folded)
    ]


# --- the checks -------------------------------------------------------------------------


def check_title(title: str) -> QcResult:
    """Pass when the article has a non-empty ``h1`` title."""
    if not title:
        return QcResult(False, "no <h1> title with text", feedback="add an <h1> title")
    return QcResult(True, f"title {title[:80]!r}")


def check_word_count(count: int, min_words: int, max_words: int) -> QcResult:
    """Pass when ``count`` lies within ``[min_words, max_words]``."""
    detail = f"{count} words; {min_words}-{max_words} allowed"
    if count < min_words:
        feedback = f"lengthen by about {min_words - count} words to at least {min_words}"
        return QcResult(False, detail, feedback=feedback)
    if count > max_words:
        feedback = f"shorten by about {count - max_words} words to at most {max_words}"
        return QcResult(False, detail, feedback=feedback)
    return QcResult(True, detail)


def _links_to(links: list[Link], target_url: str) -> list[Link]:
    return [link for link in links if link.href and normalise_url(link.href) == target_url]


def check_target_link(links: list[Link], target_url: str, anchor_text: str) -> QcResult:
    """Pass when exactly one link goes to ``target_url`` with ``anchor_text`` as its text."""
    anchor = " ".join(anchor_text.split())
    matching = [link for link in _links_to(links, target_url) if link.text == anchor]
    if len(matching) != 1:
        detail = f"found {len(matching)} links to {target_url} with the anchor text; need 1"
        feedback = f"link the anchor text {anchor!r} exactly once to {target_url}"
        return QcResult(False, detail, feedback=feedback)
    return QcResult(True, f"one link to {target_url} with the anchor text")


def check_no_other_target_links(links: list[Link], target_url: str, anchor_text: str) -> QcResult:
    """Pass when no link to ``target_url`` carries another text than ``anchor_text``."""
    anchor = " ".join(anchor_text.split())
    others = [link.text for link in _links_to(links, target_url) if link.text != anchor]
    if others:
        detail = f"other links to the target with texts {others[:3]!r}"
        feedback = f"remove the links to {target_url} whose text is not {anchor!r}"
        return QcResult(False, detail, feedback=feedback)
    return QcResult(True, "no other links to the target")


def _is_outbound(href: str, publisher_domain: str) -> bool:
    host = urlsplit(href.strip()).hostname
    if host is None:  # relative, fragment-only, mailto: ... stays on the page or site
        return False
    host, own = host.rstrip(".").removeprefix("www."), publisher_domain.removeprefix("www.")
    return host != own and not host.endswith(f".{own}")


def check_outbound_links(links: list[Link], publisher_domain: str, max_links: int) -> QcResult:
    """Pass when at most ``max_links`` distinct URLs off ``publisher_domain`` are linked."""
    outbound = {
        normalise_url(link.href)
        for link in links
        if link.href and _is_outbound(link.href, publisher_domain)
    }
    detail = f"{len(outbound)} distinct outbound links; at most {max_links} allowed"
    if len(outbound) > max_links:
        excess = len(outbound) - max_links
        feedback = f"remove {excess} outbound links; keep at most {max_links}, the target included"
        return QcResult(False, detail, feedback=feedback)
    return QcResult(True, detail)


def check_forbidden_terms(text: str, forbidden_terms: Sequence[str]) -> QcResult:
    """Pass when none of ``forbidden_terms`` appears in ``text`` as whole words."""
    found = _found_phrases(text, forbidden_terms)
    if found:
        listed = ", ".join(repr(term) for term in found[:5])
        return QcResult(
            False, f"forbidden terms in the text: {listed}", feedback=f"remove the terms {listed}"
        )
    return QcResult(True, f"none of {len(forbidden_terms)} forbidden terms")


def check_forbidden_topics(topic: str, title: str, forbidden_topics: Sequence[str]) -> QcResult:
    """Pass unless the order's topic or the title names a topic the publisher refuses.

    Not rewritable: the order itself is off-limits for this publisher.
    """
    found = _found_phrases(f"{topic}\n{title}", forbidden_topics)
    if found:
        listed = ", ".join(repr(term) for term in found[:5])
        detail = f"the publisher does not accept {listed}"
        return QcResult(False, detail, rewritable=False, feedback=f"{detail}; choose a publisher")
    return QcResult(True, f"none of {len(forbidden_topics)} forbidden topics", rewritable=False)


def check_language(detected: str, expected: str, *, word_count: int, min_words: int) -> QcResult:
    """Pass when the ``detected`` language is ``expected``, or the text is too short to tell."""
    if word_count < min_words:
        return QcResult(True, f"{word_count} words are too few to tell the language")
    if detected != expected:
        return QcResult(
            False,
            f"written in {detected!r}, ordered in {expected!r}",
            feedback=f"write the whole article in {expected!r}, not {detected!r}",
        )
    return QcResult(True, f"written in {expected!r}")


def check_readability(score: float, min_lix: float, max_lix: float) -> QcResult:
    """Pass when the LIX ``score`` lies within ``[min_lix, max_lix]``."""
    detail = f"LIX {score:.1f}; {min_lix:g}-{max_lix:g} allowed"
    if score < min_lix:
        feedback = f"write fuller sentences: LIX {score:.1f}, aim for at least {min_lix:g}"
        return QcResult(False, detail, feedback=feedback)
    if score > max_lix:
        feedback = f"use shorter sentences and plainer words: LIX {score:.1f}, at most {max_lix:g}"
        return QcResult(False, detail, feedback=feedback)
    return QcResult(True, detail)


def check_near_duplicate(
    signature: Sequence[int], earlier: Sequence[Sequence[int]], threshold: float
) -> QcResult:
    """Pass when the article resembles every earlier one less than ``threshold`` (Jaccard)."""
    highest = max_similarity(signature, earlier)
    detail = f"closest of {len(earlier)} earlier articles: {highest:.2f}; below {threshold:g}"
    if highest >= threshold:
        feedback = f"reword the text: {highest:.0%} of it matches an earlier article"
        return QcResult(False, detail, feedback=f"{feedback} (must stay below {threshold:.0%})")
    return QcResult(True, detail)


def keyword_density(text: str, phrases: Sequence[str]) -> float:
    """Mentions of any of ``phrases`` per word of ``text``, overlapping mentions counted once.

    A mention counts once however many words the phrase has, so that a long topic
    is not taken for stuffing merely for being long.
    """
    words = normalised_words(text)
    spans = sorted(
        (start, start + len(phrase))
        for phrase in (normalised_words(item) for item in phrases)
        if phrase
        for start in range(len(words) - len(phrase) + 1)
        if words[start : start + len(phrase)] == phrase
    )
    mentions, reach = 0, 0
    for start, end in spans:
        mentions += start >= reach
        reach = max(reach, end)
    return mentions / len(words) if words else 0.0


def check_keyword_stuffing(text: str, anchor_text: str, topic: str, max_density: float) -> QcResult:
    """Pass when the anchor and topic are mentioned in at most ``max_density`` of the words."""
    density = keyword_density(text, (anchor_text, topic))
    detail = f"anchor and topic mentioned in {density:.1%} of words; at most {max_density:.1%}"
    if density > max_density:
        feedback = f"mention the topic and anchor less often (at most {max_density:.1%} of words)"
        return QcResult(False, detail, feedback=feedback)
    return QcResult(True, detail)


# --- the stage --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Inputs:
    """Everything the checks read: the order, the article and the limits that apply."""

    order: OrderDocument
    facts: ArticleFacts
    rules: QcRules
    #: Word and outbound-link bounds: the publisher's when known, else the rules'.
    limits: PublisherProfile | QcRules
    earlier: Sequence[Sequence[int]]
    forbidden_topics: tuple[str, ...]
    forbidden_terms: tuple[str, ...]


# Check name -> check, in the order they run; the first failure names the rejection.
_CHECKS: Final[dict[str, Callable[[_Inputs], QcResult]]] = {
    "title": lambda i: check_title(i.facts.title),
    "word_count": lambda i: check_word_count(
        i.facts.word_count, i.limits.min_words, i.limits.max_words
    ),
    "target_link": lambda i: check_target_link(
        i.facts.links, str(i.order.target_url), i.order.anchor_text
    ),
    "no_other_target_links": lambda i: check_no_other_target_links(
        i.facts.links, str(i.order.target_url), i.order.anchor_text
    ),
    "outbound_links": lambda i: check_outbound_links(
        i.facts.links, i.order.publisher_domain, i.limits.max_outbound_links
    ),
    "forbidden_topics": lambda i: check_forbidden_topics(
        i.order.topic, i.facts.title, i.forbidden_topics
    ),
    "forbidden_terms": lambda i: check_forbidden_terms(i.facts.text, i.forbidden_terms),
    "language": lambda i: check_language(
        i.facts.language,
        i.order.language,
        word_count=i.facts.word_count,
        min_words=i.rules.language_min_words,
    ),
    "readability": lambda i: check_readability(i.facts.lix, i.rules.min_lix, i.rules.max_lix),
    "keyword_stuffing": lambda i: check_keyword_stuffing(
        i.facts.text, i.order.anchor_text, i.order.topic, i.rules.max_keyword_density
    ),
    "near_duplicate": lambda i: check_near_duplicate(
        i.facts.signature, i.earlier, i.rules.near_duplicate_threshold
    ),
}


def _report(results: dict[str, QcResult], facts: ArticleFacts) -> dict[str, Any]:
    failed = [result for result in results.values() if not result.passed]
    return {
        "passed": not failed,
        "checks": {name: result.to_json() for name, result in results.items()},
        "word_count": facts.word_count,
        "lix": facts.lix,
        "language": facts.language,
        "signature": facts.signature,
        "rewritable": all(result.rewritable for result in failed),
        "feedback": [result.feedback for result in failed],
    }


def run_qc(
    order: OrderDocument,
    article: dict[str, Any],
    *,
    publisher: PublisherProfile | None = None,
    earlier_signatures: Sequence[Sequence[int]] = (),
    rules: QcRules = QcRules(),  # frozen, so one shared default is safe
) -> dict[str, Any]:
    """Check the writer's ``article`` against ``order`` and the publisher's rules.

    Args:
        order: The order the article was written for.
        article: The writing stage's output; only ``article["html"]`` is read.
        publisher: The publisher's profile: word bounds, outbound-link limit and
            forbidden topics and terms. Without it ``rules`` gives the bounds and
            nothing is forbidden.
        earlier_signatures: MinHash signatures (``report["signature"]``) of earlier
            articles this one must not nearly duplicate.
        rules: Thresholds; see :class:`QcRules`.

    Raises:
        QualityRejected: a check failed; the message names the first failure and
            ``details`` holds the full report with ``"passed": False``.

    Returns:
        The report: ``passed``, ``checks`` (name -> ``{"passed", "detail",
        "rewritable"}``), ``word_count``, ``lix``, ``language`` (detected),
        ``signature``, ``rewritable`` (every failed check is) and ``feedback``
        (one line for the writer per failed check).
    """
    facts = ArticleFacts.from_html(str(article.get("html", "")))
    inputs = _Inputs(
        order,
        facts,
        rules,
        limits=publisher or rules,
        earlier=earlier_signatures,
        forbidden_topics=publisher.forbidden_topics if publisher else (),
        forbidden_terms=publisher.forbidden_terms if publisher else (),
    )
    results = {name: check(inputs) for name, check in _CHECKS.items()}
    report = _report(results, facts)
    failed = [(name, result) for name, result in results.items() if not result.passed]
    if failed:
        name, result = failed[0]
        raise QualityRejected(f"{name}: {result.detail}", details=report, code=name)
    return report


def may_rewrite(report: dict[str, Any], *, rewrites_done: int, max_rewrites: int) -> bool:
    """The rewrite-or-fail rule: rewrite while every failed check is fixable and budget is left."""
    return bool(report.get("rewritable")) and rewrites_done < max_rewrites


def judge_article(
    order: OrderDocument,
    article: dict[str, Any],
    *,
    publisher: PublisherProfile | None = None,
    earlier_signatures: Sequence[Sequence[int]] = (),
    rewrites_done: int = 0,
    max_rewrites: int = 0,
) -> dict[str, Any]:
    """:func:`run_qc`, then the rewrite-or-fail rule on a rejection.

    Raises:
        RewriteNeeded: the article failed only checks a rewrite can fix and fewer
            than ``max_rewrites`` rewrites were done: back to the writer with the report.
        QualityRejected: otherwise, when a check failed.
    """
    try:
        return run_qc(order, article, publisher=publisher, earlier_signatures=earlier_signatures)
    except QualityRejected as rejected:
        if may_rewrite(rejected.details, rewrites_done=rewrites_done, max_rewrites=max_rewrites):
            raise RewriteNeeded(
                str(rejected), details=rejected.details, code=rejected.code
            ) from rejected
        raise
