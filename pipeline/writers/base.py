"""The writer seam: one protocol, what every backend shares, and the factory.

A writer turns preflight's prompt into an article. The offline writer is
deterministic and needs nothing; the OpenAI-compatible writer calls a chat
completions service. Both read the same review feedback on a rewrite, aim at the
same length range (:func:`length_bounds`) and return exactly one backlink
(:func:`ensure_link` repairs a forgotten one).
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

from pipeline.errors import ConfigurationError
from pipeline.limits import CallGate
from pipeline.manifest import OrderDocument
from pipeline.stages.html_article import ArticleParser, normalise_url, parse_article
from pipeline.stages.preflight import DEFAULT_TARGET_WORDS

if TYPE_CHECKING:
    from pipeline.settings import Settings

#: How far inside a one-sided bound to aim, as a share of the bound: the offline
#: writer lands within about ±10% of its target.
_ONE_SIDED_MARGIN: Final = 0.1

# A whole number of words ("450", "1,200"); never a share ("2.5%", "70%") or a decimal.
_NUMBER = r"(\d{1,3}(?:,\d{3})+|\d+)\b(?!\s*%|\.\d)"
#: Only lines about length are read for bounds: other QC notes carry numbers too
#: ("keep at most 2 outbound links", "LIX 55.0, at most 50").
_LENGTH_LINE = re.compile(r"\b(?:shorten|lengthen)|\bword\s*count\b|\d\s*words\b", re.IGNORECASE)
_AT_MOST = re.compile(
    r"\b(?:at\s+most|no\s+more\s+than|not\s+more\s+than|maximum(?:\s+of)?|max\.?"
    r"|up\s+to|under|below|(?<!no\s)(?<!not\s)(?:fewer|less)\s+than)\s*" + _NUMBER,
    re.IGNORECASE,
)
_AT_LEAST = re.compile(
    r"\b(?:at\s+least|no\s+fewer\s+than|no\s+less\s+than|not\s+less\s+than"
    r"|minimum(?:\s+of)?|min\.?|over|above|(?<!no\s)(?<!not\s)more\s+than)\s*" + _NUMBER,
    re.IGNORECASE,
)
_BETWEEN = re.compile(
    r"\bbetween\s+" + _NUMBER + r"\s*(?:and|to|-|\u2013)\s*" + _NUMBER, re.IGNORECASE
)
_SHIFT = re.compile(
    r"\b(shorten|cut|trim|reduce|lengthen|extend|expand)\w*\b.*?\bby\s+"
    r"(?:about\s+|around\s+|roughly\s+|approximately\s+|some\s+|~\s*)?" + _NUMBER + r"\s*words",
    re.IGNORECASE,
)
_URL = re.compile(r"\S+://\S+")
# A quoted span such as QC's repr of an anchor text ("link 'top 10 words' ..."),
# not an apostrophe inside a word ("don't").
_QUOTED = re.compile(r"(?<!\w)(?:'[^']*'|\"[^\"]*\")(?!\w)")
_SHORTER: Final = frozenset({"shorten", "cut", "trim", "reduce"})


class Writer(Protocol):
    """Anything that writes an article for an order."""

    def write(
        self,
        order: OrderDocument,
        prompt: dict[str, Any],
        *,
        feedback: Sequence[str] = (),
        attempt: int = 1,
    ) -> dict[str, Any]:
        """Write the article for ``order`` from preflight's ``prompt``.

        Args:
            order: The order being written.
            prompt: Preflight's prompt (topic, language, target_words, anchor_text,
                target_url, tone, guidelines; optionally min_words and max_words).
            feedback: On a rewrite, QC's lines saying what to fix.
            attempt: 1 for the first draft, 2 for the first rewrite, and so on.

        Returns:
            ``{"title", "html", "word_count", "writer", "attempt", ...}``; ``html`` is
            a fragment of ``h1``, ``h2`` and ``p`` elements with the one backlink.
        """
        ...


@dataclass(frozen=True)
class LengthBounds:
    """The allowed visible word count; ``None`` means that side is open."""

    min_words: int | None = None
    max_words: int | None = None
    #: Words to add (or, negative, remove) asked for without a bound.
    shift: int = 0

    def contains(self, count: int) -> bool:
        """Whether ``count`` words satisfy both bounds."""
        above = self.min_words is None or count >= self.min_words
        below = self.max_words is None or count <= self.max_words
        return above and below

    def aim(self, target: int) -> int:
        """The word count to aim for, given the prompt's ``target``.

        The middle of the range when both sides are known; otherwise ``target``
        moved a margin inside the one known side (and by ``shift``).
        """
        low, high = self.min_words, self.max_words
        if low is not None and high is not None:
            return max(1, (low + high) // 2)
        aimed = target + self.shift
        if high is not None:
            aimed = min(aimed, int(high * (1 - _ONE_SIDED_MARGIN)))
        if low is not None:
            aimed = max(aimed, round(low * (1 + _ONE_SIDED_MARGIN)))
        return max(1, aimed)

    def describe(self, target: int) -> str:
        """One line telling a model how long to write, e.g. for the prompt ``target``."""
        low, high = self.min_words, self.max_words
        sides = [f"at least {low}" if low is not None else "", f"at most {high}" if high else ""]
        limits = " and ".join(side for side in sides if side)
        suffix = f" ({limits})" if limits else ""
        return f"Length: about {self.aim(target)} words of visible text{suffix}."


def _number(text: str) -> int:
    return int(text.replace(",", ""))


def _optional_int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _tighter(current: int | None, new: int, pick: Callable[[int, int], int]) -> int:
    return new if current is None else pick(current, new)


def _read_line(line: str, bounds: LengthBounds) -> LengthBounds:
    text = _QUOTED.sub(" ", _URL.sub(" ", line))  # quoted or URL digits are no word counts
    if not _LENGTH_LINE.search(text):
        return bounds
    low, high = bounds.min_words, bounds.max_words
    between = list(_BETWEEN.finditer(text))
    lows = [_number(match[1]) for match in [*between, *_AT_LEAST.finditer(text)]]
    highs = [_number(match[2]) for match in between]
    highs += [_number(match[1]) for match in _AT_MOST.finditer(text)]
    for value in lows:
        low = _tighter(low, value, max)
    for value in highs:
        high = _tighter(high, value, min)
    moved = _SHIFT.search(text)
    if lows or highs or not moved:
        return LengthBounds(low, high, bounds.shift)
    # A bare "shorten by about 120 words" is relative to the prompt's target.
    size = _number(moved[2])
    return LengthBounds(low, high, bounds.shift + (-size if moved[1].lower() in _SHORTER else size))


def length_bounds(prompt: Mapping[str, Any], feedback: Iterable[str] = ()) -> LengthBounds:
    """The length range an article must reach: the prompt's bounds tightened by feedback.

    ``prompt["min_words"]``/``prompt["max_words"]`` (the publisher's bounds) come
    first. A feedback line about length (it says shorten, lengthen, word count or
    "N words") may then add "at least N", "at most N", "between N and M" or a bare
    "shorten/lengthen by about N words". URLs, percentages and decimals are
    ignored, and the tighter of two bounds wins.
    """
    bounds = LengthBounds(
        _optional_int(prompt.get("min_words")), _optional_int(prompt.get("max_words"))
    )
    for line in feedback:
        bounds = _read_line(str(line), bounds)
    return bounds


def fill_prompt(order: OrderDocument, prompt: Mapping[str, Any]) -> dict[str, Any]:
    """Preflight's stored ``prompt`` with anything it lacks filled from ``order``."""
    fallbacks = {
        "topic": order.topic,
        "language": order.language,
        "anchor_text": order.anchor_text,
        "target_url": str(order.target_url),
        "publisher_domain": order.publisher_domain,
        "target_words": DEFAULT_TARGET_WORDS,
        "tone": "informative",
    }
    return {**fallbacks, **prompt}


def _wrap_first_mention(fragment: str, target_url: str, anchor_text: str) -> str | None:
    """Link the first plain mention of the anchor text inside a paragraph, if there is one."""
    link = f'<a href="{html.escape(target_url, quote=True)}">{html.escape(anchor_text)}</a>'
    for needle in dict.fromkeys((html.escape(anchor_text, quote=False), anchor_text)):
        for match in re.finditer(re.escape(needle), fragment):
            before = fragment[: match.start()]
            in_text = before.rfind("<") < before.rfind(">")
            in_paragraph = before.rfind("<p") > before.rfind("</p>")
            in_link = before.rfind("<a") > before.rfind("</a>")
            if in_text and in_paragraph and not in_link:
                return fragment[: match.start()] + link + fragment[match.end() :]
    return None


def ensure_link(fragment: str, target_url: str, anchor_text: str) -> tuple[str, bool]:
    """Return ``fragment`` with the backlink, and whether it had to be added.

    When the model wrote the anchor text but forgot the link, its first mention in
    a paragraph is linked. Anything else is left for QC, whose rejection sends the
    model a "link the anchor text exactly once" note on the rewrite.
    """
    checked, repaired, _parsed = ensure_link_parsed(fragment, target_url, anchor_text)
    return checked, repaired


def ensure_link_parsed(
    fragment: str, target_url: str, anchor_text: str
) -> tuple[str, bool, ArticleParser]:
    """:func:`ensure_link`, and the returned fragment parsed.

    A writer reads its draft's title and text from the same parse that looked for the
    link; only a repaired fragment is parsed again.
    """
    anchor, target = " ".join(anchor_text.split()), normalise_url(target_url)
    parsed = parse_article(fragment)
    if any(
        link.text == anchor and normalise_url(link.href or "") == target for link in parsed.links
    ):
        return fragment, False, parsed
    repaired = _wrap_first_mention(fragment, target_url, anchor_text)
    if repaired is None:
        return fragment, False, parsed
    return repaired, True, parse_article(repaired)


def make_writer(settings: Settings, gate: CallGate | None = None) -> Writer:
    """Return the writer ``settings.writer_backend`` names.

    ``gate`` is the shared rate limit the HTTP writer takes a token from per request.

    Raises:
        ConfigurationError: ``openai`` is chosen without a usable ``WRITER_URL`` or
            ``WRITER_MODEL``.
    """
    if settings.writer_backend == "offline":
        from pipeline.writers.offline import OfflineWriter

        return OfflineWriter(latency_seconds=settings.writer_offline_latency_ms / 1000)
    url, model = (settings.writer_url or "").strip(), settings.writer_model.strip()
    missing = [name for name, value in (("WRITER_URL", url), ("WRITER_MODEL", model)) if not value]
    if missing:
        raise ConfigurationError(
            f"WRITER_BACKEND=openai needs {' and '.join(missing)} "
            "(e.g. WRITER_URL=http://localhost:8000/v1 WRITER_MODEL=gpt-4o-mini)",
            code="writer_not_configured",
        )
    if not url.startswith(("http://", "https://")):
        raise ConfigurationError(
            f"WRITER_URL must be an http(s) URL, got {url!r}", code="writer_url_invalid"
        )
    from pipeline.writers.openai_compat import OpenAICompatibleWriter

    return OpenAICompatibleWriter(
        url=url,
        api_key=settings.writer_api_key,
        model=model,
        timeout=settings.writer_timeout_seconds,
        max_retries=settings.writer_max_retries,
        gate=gate,
        gate_max_wait=settings.batch_rate_limit_max_wait_seconds,
    )
