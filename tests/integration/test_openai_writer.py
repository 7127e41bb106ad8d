"""The OpenAI-compatible writer against a real local HTTP server speaking chat completions.

The server is pytest-httpserver's (werkzeug, in a thread, on a free port). Waits
between retries go to a recorder instead of ``time.sleep``, so the tests are fast
and can check what the writer asked to wait.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from pipeline.errors import ConfigurationError, PermanentError, RateLimited, TransientError
from pipeline.manifest import OrderDocument
from pipeline.writers.openai_compat import OpenAICompatibleWriter

pytestmark = pytest.mark.integration

PATH = "/v1/chat/completions"
TARGET = "https://www.acme-shoes.com/running?size=42&colour=red"
ANCHOR = "running shoes for beginners"
ARTICLE = (
    "<h1>Trail running for starters</h1>\n<h2>Why trails</h2>\n"
    "<p>Trails are soft and quiet. Good "
    '<a href="https://www.acme-shoes.com/running?size=42&amp;colour=red">'
    "running shoes for beginners</a> help a lot.</p>\n<h2>Getting going</h2>\n"
    "<p>Start slowly and enjoy the view.</p>"
)


class Sleeps(list[float]):
    """Records the waits the writer asks for instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def completion(content: str, model: str = "test-model") -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 120, "completion_tokens": 80, "total_tokens": 200},
    }


def make_order() -> OrderDocument:
    return OrderDocument.model_validate(
        {
            "order_id": "order-1",
            "customer_id": "customer-1",
            "target_url": TARGET,
            "anchor_text": ANCHOR,
            "publisher_domain": "blog.example.org",
            "language": "en",
            "topic": "trail running",
        }
    )


PROMPT: dict[str, Any] = {
    "topic": "trail running",
    "language": "en",
    "target_words": 600,
    "anchor_text": ANCHOR,
    "target_url": TARGET,
    "tone": "informative",
    "publisher_domain": "blog.example.org",
    "guidelines": ["Keep an informative tone; no promotional claims or calls to action."],
}


@pytest.fixture()
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture()
def writer(httpserver: HTTPServer, sleeps: Sleeps) -> Iterator[OpenAICompatibleWriter]:
    built = OpenAICompatibleWriter(
        url=httpserver.url_for("/v1"),
        api_key="sk-test",
        model="test-model",
        timeout=5.0,
        max_retries=3,
        sleep=sleeps,
    )
    yield built
    built.close()


def expect(httpserver: HTTPServer) -> Any:
    return httpserver.expect_ordered_request(PATH, method="POST")


def requests_made(httpserver: HTTPServer) -> int:
    return len(httpserver.log)


def test_a_completion_becomes_an_article(
    httpserver: HTTPServer, writer: OpenAICompatibleWriter
) -> None:
    expect(httpserver).respond_with_json(completion(ARTICLE))

    article = writer.write(make_order(), PROMPT, attempt=1)

    request, _ = httpserver.log[0]
    body = json.loads(request.get_data())
    assert body["model"] == "test-model"
    assert [message["role"] for message in body["messages"]] == ["system", "user"]
    user = body["messages"][1]["content"]
    assert ANCHOR in user
    assert "https://www.acme-shoes.com/running?size=42&amp;colour=red" in user
    assert "about 600 words" in user
    assert isinstance(body["temperature"], float)
    assert request.headers["Authorization"] == "Bearer sk-test"
    assert article["html"] == ARTICLE
    assert article["title"] == "Trail running for starters"
    assert article["word_count"] == 27
    assert article["writer"] == "openai"
    assert article["model"] == "test-model"
    assert article["attempt"] == 1
    assert article["usage"]["total_tokens"] == 200


def test_rewrite_feedback_is_sent_to_the_model(
    httpserver: HTTPServer, writer: OpenAICompatibleWriter
) -> None:
    expect(httpserver).respond_with_json(completion(ARTICLE))
    feedback = ["shorten by about 120 words to at most 450"]

    article = writer.write(make_order(), PROMPT, feedback=feedback, attempt=2)

    user = json.loads(httpserver.log[0][0].get_data())["messages"][1]["content"]
    assert "- shorten by about 120 words to at most 450" in user
    assert "about 405 words" in user
    assert article["attempt"] == 2


def test_fenced_html_is_unwrapped(httpserver: HTTPServer, writer: OpenAICompatibleWriter) -> None:
    expect(httpserver).respond_with_json(completion(f"```html\n{ARTICLE}\n```"))

    article = writer.write(make_order(), PROMPT)

    assert article["html"] == ARTICLE


def test_a_forgotten_link_on_the_anchor_text_is_added(
    httpserver: HTTPServer, writer: OpenAICompatibleWriter
) -> None:
    unlinked = f"<h1>Trails</h1><p>Good {ANCHOR} help a lot.</p>"
    expect(httpserver).respond_with_json(completion(unlinked))

    article = writer.write(make_order(), PROMPT)

    assert article["link_repaired"] is True
    assert f'<a href="{TARGET.replace("&", "&amp;")}">{ANCHOR}</a>' in article["html"]


def test_429_waits_as_long_as_retry_after_says_then_succeeds(
    httpserver: HTTPServer, writer: OpenAICompatibleWriter, sleeps: Sleeps
) -> None:
    expect(httpserver).respond_with_json(
        {"error": {"message": "slow down"}}, status=429, headers={"Retry-After": "2"}
    )
    expect(httpserver).respond_with_json(completion(ARTICLE))

    article = writer.write(make_order(), PROMPT)

    assert requests_made(httpserver) == 2
    assert sleeps == [2.0]
    assert article["html"] == ARTICLE


def test_server_errors_back_off_exponentially_then_succeed(
    httpserver: HTTPServer, writer: OpenAICompatibleWriter, sleeps: Sleeps
) -> None:
    expect(httpserver).respond_with_data("upstream died", status=500)
    expect(httpserver).respond_with_data("upstream died", status=502)
    expect(httpserver).respond_with_json(completion(ARTICLE))

    article = writer.write(make_order(), PROMPT)

    assert requests_made(httpserver) == 3
    assert sleeps == [0.5, 1.0]
    assert article["title"] == "Trail running for starters"


def test_rate_limited_forever_raises_rate_limited_with_retry_after(
    httpserver: HTTPServer, writer: OpenAICompatibleWriter, sleeps: Sleeps
) -> None:
    httpserver.expect_request(PATH, method="POST").respond_with_json(
        {"error": {"message": "quota"}}, status=429, headers={"Retry-After": "3"}
    )

    with pytest.raises(RateLimited, match="429") as raised:
        writer.write(make_order(), PROMPT)

    assert raised.value.retry_after == 3.0
    assert requests_made(httpserver) == 4  # the first try and max_retries=3 retries
    assert sleeps == [3.0, 3.0, 3.0]


def test_a_retry_after_longer_than_the_longest_wait_is_left_to_the_pipeline(
    httpserver: HTTPServer, writer: OpenAICompatibleWriter, sleeps: Sleeps
) -> None:
    httpserver.expect_request(PATH, method="POST").respond_with_json(
        {"error": "quota"}, status=429, headers={"Retry-After": "3600"}
    )

    with pytest.raises(RateLimited) as raised:
        writer.write(make_order(), PROMPT)

    assert raised.value.retry_after == 3600.0
    assert requests_made(httpserver) == 1
    assert sleeps == []


def test_server_errors_forever_raise_a_transient_error(
    httpserver: HTTPServer, writer: OpenAICompatibleWriter, sleeps: Sleeps
) -> None:
    httpserver.expect_request(PATH, method="POST").respond_with_data("down", status=503)

    with pytest.raises(TransientError, match="503"):
        writer.write(make_order(), PROMPT)

    assert requests_made(httpserver) == 4
    assert sleeps == [0.5, 1.0, 2.0]


@pytest.mark.parametrize("status", [401, 403, 404])
def test_auth_and_not_found_are_configuration_errors(
    httpserver: HTTPServer, writer: OpenAICompatibleWriter, status: int
) -> None:
    httpserver.expect_request(PATH, method="POST").respond_with_json(
        {"error": {"message": "invalid api key"}}, status=status
    )

    with pytest.raises(ConfigurationError, match="invalid api key"):
        writer.write(make_order(), PROMPT)

    assert requests_made(httpserver) == 1


def test_a_refused_request_is_permanent_with_the_servers_message(
    httpserver: HTTPServer, writer: OpenAICompatibleWriter
) -> None:
    httpserver.expect_request(PATH, method="POST").respond_with_json(
        {"error": {"message": "context length exceeded"}}, status=400
    )

    with pytest.raises(PermanentError, match="context length exceeded"):
        writer.write(make_order(), PROMPT)

    assert requests_made(httpserver) == 1


def test_a_malformed_response_is_transient(
    httpserver: HTTPServer, writer: OpenAICompatibleWriter
) -> None:
    expect(httpserver).respond_with_data("<html>gateway</html>", content_type="text/html")

    with pytest.raises(TransientError, match="malformed"):
        writer.write(make_order(), PROMPT)


def test_a_timeout_is_transient(httpserver: HTTPServer, sleeps: Sleeps) -> None:
    # Given a server that answers only after the writer's 0.5 s timeout
    release = threading.Event()

    def slow(request: Request) -> Response:
        release.wait(2.0)
        return Response(json.dumps(completion(ARTICLE)), content_type="application/json")

    httpserver.expect_request(PATH, method="POST").respond_with_handler(slow)
    writer = OpenAICompatibleWriter(
        httpserver.url_for("/v1"), None, "test-model", timeout=0.5, max_retries=0, sleep=sleeps
    )

    # When the writer calls it, then the timeout surfaces as a transient error
    try:
        with pytest.raises(TransientError, match="timed out"):
            writer.write(make_order(), PROMPT)
    finally:
        release.set()
        writer.close()


def test_an_unreachable_server_is_transient(sleeps: Sleeps) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    writer = OpenAICompatibleWriter(
        f"http://127.0.0.1:{port}/v1", None, "test-model", timeout=1.0, max_retries=2, sleep=sleeps
    )

    with pytest.raises(TransientError, match="cannot reach"):
        writer.write(make_order(), PROMPT)

    assert sleeps == [0.5, 1.0]
    writer.close()
