"""The Writer contract (``pipeline.writers.base.Writer``), run against every writer.

* ``offline``: :class:`OfflineWriter`, no service.
* ``openai``: :class:`OpenAICompatibleWriter` against a real local HTTP server
  (pytest-httpserver) playing an obedient model: it writes what the user message
  asks for (the length line, the one link), so what the writer sends is checked
  by what comes back.

Both promise the same article shape and read the same review feedback (through
:func:`length_bounds`); a failure surfaces as the error class whose category the
retry policy acts on (``pipeline.classify.categorize``).
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from pipeline.classify import categorize, retry_delay
from pipeline.errors import BatchlineError, ErrorCategory, RateLimited
from pipeline.manifest import OrderDocument
from pipeline.stages.html_article import parse_article
from pipeline.writers import OfflineWriter, OpenAICompatibleWriter, Writer

PATH = "/v1/chat/completions"
TARGET = "https://www.acme-shoes.com/running?size=42&colour=red"
ANCHOR = "running shoes for beginners"
ARTICLE_TAGS = {"h1", "h2", "p", "a"}
_LENGTH = re.compile(r"Length: about (\d+) words")
_LINK = re.compile(r"written exactly as (<a href=\"[^\"]*\">.*?</a>)")

IMPLEMENTATIONS = [
    pytest.param("offline", id="offline"),
    pytest.param("openai", id="openai", marks=pytest.mark.integration),
]


def make_order(**overrides: Any) -> OrderDocument:
    fields: dict[str, Any] = {
        "order_id": "order-1",
        "customer_id": "customer-1",
        "target_url": TARGET,
        "anchor_text": ANCHOR,
        "publisher_domain": "blog.example.org",
        "language": "en",
        "topic": "trail running",
    }
    fields.update(overrides)
    return OrderDocument.model_validate(fields)


def prompt_for(order: OrderDocument, **overrides: Any) -> dict[str, Any]:
    prompt: dict[str, Any] = {
        "topic": order.topic,
        "language": order.language,
        "target_words": 600,
        "anchor_text": order.anchor_text,
        "target_url": str(order.target_url),
    }
    prompt.update(overrides)
    return prompt


def obedient_article(user_message: str) -> str:
    """The article a model that follows the brief writes: the asked length, the one link."""
    words = int(_LENGTH.search(user_message)[1])  # type: ignore[index]
    link = _LINK.search(user_message)[1]  # type: ignore[index]
    fixed = ["Trail", "notes", "Getting", "started", "Read", "about", *ANCHOR.split()]
    filler = " ".join(["word"] * max(0, words - len(fixed)))
    return f"<h1>Trail notes</h1><h2>Getting started</h2><p>Read about {link} {filler}</p>"


def obedient_model(request: Request) -> Response:
    """A chat completions endpoint whose model does exactly what the user message says."""
    messages = json.loads(request.get_data())["messages"]
    user = next(message["content"] for message in messages if message["role"] == "user")
    body = {
        "model": "contract-model",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": obedient_article(user)}}
        ],
    }
    return Response(json.dumps(body), content_type="application/json")


def openai_writer(url: str) -> OpenAICompatibleWriter:
    """A writer that retries nothing, so each failure surfaces from its first answer."""
    return OpenAICompatibleWriter(
        url, None, "contract-model", timeout=5.0, max_retries=0, sleep=lambda seconds: None
    )


@pytest.fixture(params=IMPLEMENTATIONS)
def implementation(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture()
def writer(implementation: str, request: pytest.FixtureRequest) -> Iterator[Writer]:
    """Each writer in turn; the HTTP one talks to the obedient model."""
    if implementation == "offline":
        yield OfflineWriter()
        return
    server: HTTPServer = request.getfixturevalue("httpserver")
    server.expect_request(PATH, method="POST").respond_with_handler(obedient_model)
    built = openai_writer(server.url_for("/v1"))
    try:
        yield built
    finally:
        built.close()


# --- what every article looks like ---------------------------------------------------------


@pytest.mark.parametrize("attempt", [1, 2, 3])
def test_an_article_has_the_documented_fields_and_echoes_the_attempt(
    writer: Writer, implementation: str, attempt: int
) -> None:
    order = make_order()

    article = writer.write(order, prompt_for(order), attempt=attempt)

    assert {"title", "html", "word_count", "writer", "attempt"} <= set(article)
    assert article["attempt"] == attempt
    assert article["writer"] == implementation  # each writer names itself as its id here
    json.dumps(article)  # stored in the ledger as JSON


def test_the_html_is_headings_and_paragraphs_with_the_one_backlink(writer: Writer) -> None:
    order = make_order()

    article = writer.write(order, prompt_for(order))

    parsed = parse_article(article["html"])
    assert set(re.findall(r"<(\w+)", article["html"])) <= ARTICLE_TAGS
    assert [(link.href, link.text) for link in parsed.links] == [(TARGET, ANCHOR)]
    assert article["title"] == parsed.title


def test_the_word_count_is_the_visible_word_count(writer: Writer) -> None:
    order = make_order()

    article = writer.write(order, prompt_for(order))

    assert article["word_count"] == len(parse_article(article["html"]).text.split())


# --- review feedback on a rewrite ----------------------------------------------------------


@pytest.mark.parametrize("attempt", [1, 2, 3])
@pytest.mark.parametrize("language", ["en", "sv", "de"])
def test_shorten_feedback_brings_the_count_under_the_maximum(
    writer: Writer, attempt: int, language: str
) -> None:
    order = make_order(language=language)
    feedback = ["shorten by about 160 words to at most 450"]

    article = writer.write(order, prompt_for(order), feedback=feedback, attempt=attempt)

    assert article["word_count"] <= 450
    assert len(parse_article(article["html"]).links) == 1


@pytest.mark.parametrize("attempt", [1, 2, 3])
def test_lengthen_feedback_brings_the_count_over_the_minimum(writer: Writer, attempt: int) -> None:
    order = make_order()
    feedback = ["lengthen by about 250 words to at least 850"]

    article = writer.write(order, prompt_for(order), feedback=feedback, attempt=attempt)

    assert article["word_count"] >= 850


@pytest.mark.parametrize(("low", "high"), [(450, 480), (300, 320), (900, 950), (1200, 1300)])
@pytest.mark.parametrize("attempt", [1, 2])
def test_prompt_bounds_are_met_even_when_narrow(
    writer: Writer, low: int, high: int, attempt: int
) -> None:
    order = make_order()
    prompt = prompt_for(order, min_words=low, max_words=high)

    article = writer.write(order, prompt, attempt=attempt)

    assert low <= article["word_count"] <= high


# --- failures ------------------------------------------------------------------------------


def _unreachable_url() -> str:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}/v1"


def _answering(status: int, headers: dict[str, str] | None = None) -> Callable[[HTTPServer], str]:
    def serve(server: HTTPServer) -> str:
        server.expect_request(PATH, method="POST").respond_with_json(
            {"error": {"message": f"programmed {status}"}}, status=status, headers=headers
        )
        return server.url_for("/v1")

    return serve


#: How each writer fails, and the category the retry policy must see for it.
FAILURES = [
    pytest.param("offline", None, ErrorCategory.PERMANENT, id="offline-language-without-words"),
    *(
        pytest.param("openai", serve, category, id=f"openai-{name}", marks=pytest.mark.integration)
        for name, serve, category in [
            ("unreachable", lambda server: _unreachable_url(), ErrorCategory.TRANSIENT),
            ("503", _answering(503), ErrorCategory.TRANSIENT),
            ("429", _answering(429, {"Retry-After": "7"}), ErrorCategory.RATE_LIMIT),
            ("401", _answering(401), ErrorCategory.CONFIGURATION),
            ("400", _answering(400), ErrorCategory.PERMANENT),
        ]
    ),
]


@pytest.mark.parametrize(("implementation", "serve", "category"), FAILURES)
def test_a_failure_raises_the_class_the_retry_policy_expects(
    implementation: str,
    serve: Callable[[HTTPServer], str] | None,
    category: ErrorCategory,
    request: pytest.FixtureRequest,
) -> None:
    order = make_order()
    if serve is None:  # the offline writer has words for en, sv and de only
        with pytest.raises(BatchlineError) as raised:
            OfflineWriter().write(order, prompt_for(order, language="xx"))
    else:
        broken = openai_writer(serve(request.getfixturevalue("httpserver")))
        try:
            with pytest.raises(BatchlineError) as raised:
                broken.write(order, prompt_for(order))
        finally:
            broken.close()

    assert categorize(raised.value) is category
    if isinstance(raised.value, RateLimited):  # the server's Retry-After decides the wait
        assert retry_delay(raised.value, attempt=1) == raised.value.retry_after == 7.0
