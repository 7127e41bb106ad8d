"""Read an article's HTML as a browser would: visible text, ``h1`` title and links.

The HTML is read with the standard library's :class:`html.parser.HTMLParser`,
never with regular expressions: entities are decoded, link text is the text
between ``<a>`` and ``</a>``, and hidden elements (``script``, ``style`` ...) are
skipped. Block elements end a line, so the words on either side stay apart and
a heading reads as a sentence of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Final

from pydantic import HttpUrl, TypeAdapter, ValidationError

# Elements that start a new line of text.
_BLOCK_TAGS: Final = frozenset(
    {"h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "ul", "ol", "div", "br", "blockquote"}
    | {"article", "section", "header", "footer", "table", "tr", "td", "th", "hr"}
)
_HIDDEN_TAGS: Final = frozenset({"script", "style", "template", "head", "title"})
_URL: Final = TypeAdapter(HttpUrl)
# Line breaks inside a text node are mere whitespace to a browser; only blocks end lines.
_LINE_BREAKS_TO_SPACES: Final = str.maketrans(
    dict.fromkeys("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029", " ")
)


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
            self.text_parts.append("\n")
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
            self.text_parts.append("\n")
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
        data = data.translate(_LINE_BREAKS_TO_SPACES)
        self.text_parts.append(data)
        if self._in_title:
            self.title_parts.append(data)
        if self._open_link is not None:
            self._open_link.text_parts.append(data)

    @property
    def text(self) -> str:
        """All visible text; each block starts on a new line."""
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
