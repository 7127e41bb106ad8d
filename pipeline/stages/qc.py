"""Quality control: parse the article's HTML and check it against the order.

The HTML is read with the standard library's :class:`html.parser.HTMLParser`, the
way a browser would see it, never with regular expressions: entities are decoded,
link text is the text between ``<a>`` and ``</a>``, and the visible text is what
word counts are taken from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any, Final

from pydantic import HttpUrl, TypeAdapter, ValidationError

from pipeline.errors import QualityRejected
from pipeline.manifest import OrderDocument
from pipeline.stages.preflight import CheckResult

# Elements that start a new line of text, so words on either side stay apart.
_BLOCK_TAGS: Final = frozenset(
    {"h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "ul", "ol", "div", "br", "blockquote"}
    | {"article", "section", "header", "footer", "table", "tr", "td", "th", "hr"}
)
_HIDDEN_TAGS: Final = frozenset({"script", "style", "template", "head", "title"})
_URL: Final = TypeAdapter(HttpUrl)


@dataclass
class Link:
    """One ``<a>`` element: its ``href`` (``None`` when missing) and its text."""

    href: str | None
    text_parts: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The link's visible text, whitespace collapsed."""
        return " ".join("".join(self.text_parts).split())


class ArticleParser(HTMLParser):
    """Collect an article's visible text, its ``h1`` title and its links."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text_parts: list[str] = []
        self.title_parts: list[str] = []
        self.links: list[Link] = []
        self._open_link: Link | None = None
        self._in_title = 0
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Track where we are: title, link, hidden element or a new block."""
        if tag in _BLOCK_TAGS:
            self.text_parts.append(" ")
        if tag in _HIDDEN_TAGS:
            self._hidden += 1
        elif tag == "h1":
            self._in_title += 1
        elif tag == "a":
            self._open_link = Link(href=dict(attrs).get("href"))
            self.links.append(self._open_link)

    def handle_endtag(self, tag: str) -> None:
        """Close what :meth:`handle_starttag` opened."""
        if tag in _BLOCK_TAGS:
            self.text_parts.append(" ")
        if tag in _HIDDEN_TAGS:
            self._hidden = max(0, self._hidden - 1)
        elif tag == "h1":
            self._in_title = max(0, self._in_title - 1)
        elif tag == "a":
            self._open_link = None

    def handle_data(self, data: str) -> None:
        """Keep visible text, and copy it to the title or the open link."""
        if self._hidden:
            return
        self.text_parts.append(data)
        if self._in_title:
            self.title_parts.append(data)
        if self._open_link is not None:
            self._open_link.text_parts.append(data)

    @property
    def text(self) -> str:
        """All visible text, blocks separated by spaces."""
        return "".join(self.text_parts)

    @property
    def title(self) -> str:
        """The ``h1`` text, whitespace collapsed."""
        return " ".join("".join(self.title_parts).split())


def parse_article(fragment: str) -> ArticleParser:
    """Parse an HTML fragment and return the filled parser."""
    parser = ArticleParser()
    parser.feed(fragment)
    parser.close()
    return parser


def normalise_url(url: str) -> str:
    """Return ``url`` as the order stores URLs (``str(HttpUrl)``), or unchanged if invalid."""
    try:
        return str(_URL.validate_python(url.strip()))
    except ValidationError:
        return url


def check_word_count(count: int, min_words: int, max_words: int) -> CheckResult:
    """Pass when ``count`` lies within ``[min_words, max_words]``."""
    passed = min_words <= count <= max_words
    return CheckResult(passed, f"{count} words; {min_words}-{max_words} allowed")


def _links_to(links: list[Link], target_url: str) -> list[Link]:
    return [link for link in links if link.href and normalise_url(link.href) == target_url]


def check_target_link(links: list[Link], target_url: str, anchor_text: str) -> CheckResult:
    """Pass when exactly one link goes to ``target_url`` with ``anchor_text`` as its text."""
    anchor = " ".join(anchor_text.split())
    matching = [link for link in _links_to(links, target_url) if link.text == anchor]
    if len(matching) != 1:
        return CheckResult(
            False, f"found {len(matching)} links to {target_url} with the anchor text; need 1"
        )
    return CheckResult(True, f"one link to {target_url} with the anchor text")


def check_no_other_target_links(
    links: list[Link], target_url: str, anchor_text: str
) -> CheckResult:
    """Pass when no link to ``target_url`` carries another text than ``anchor_text``."""
    anchor = " ".join(anchor_text.split())
    others = [link.text for link in _links_to(links, target_url) if link.text != anchor]
    if others:
        return CheckResult(False, f"other links to the target with texts {others[:3]!r}")
    return CheckResult(True, "no other links to the target")


def check_title(title: str) -> CheckResult:
    """Pass when the article has a non-empty ``h1`` title."""
    if not title:
        return CheckResult(False, "no <h1> title with text")
    return CheckResult(True, f"title {title[:80]!r}")


def run_qc(
    order: OrderDocument, article: dict[str, Any], *, min_words: int = 300, max_words: int = 2000
) -> dict[str, Any]:
    """Check the writer's ``article`` against ``order``.

    Args:
        order: The order the article was written for.
        article: The writing stage's output; only ``article["html"]`` is read.
        min_words: The fewest visible words allowed.
        max_words: The most visible words allowed.

    Raises:
        QualityRejected: a check failed; the message names the first failure and
            ``details`` holds the full report with ``"passed": False``.

    Returns:
        ``{"passed": True, "checks": {name: {"passed", "detail"}}, "word_count"}``.
    """
    parsed = parse_article(str(article.get("html", "")))
    target_url = str(order.target_url)
    word_count = len(parsed.text.split())
    results = {
        "title": check_title(parsed.title),
        "word_count": check_word_count(word_count, min_words, max_words),
        "target_link": check_target_link(parsed.links, target_url, order.anchor_text),
        "no_other_target_links": check_no_other_target_links(
            parsed.links, target_url, order.anchor_text
        ),
    }
    report = {
        "passed": all(result.passed for result in results.values()),
        "checks": {name: result.to_json() for name, result in results.items()},
        "word_count": word_count,
    }
    failed = [(name, result) for name, result in results.items() if not result.passed]
    if failed:
        name, result = failed[0]
        raise QualityRejected(f"{name}: {result.detail}", details=report)
    return report
