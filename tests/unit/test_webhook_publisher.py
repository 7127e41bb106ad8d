"""The webhook publisher: its request, its receipt, and one error per kind of answer.

Every HTTP exchange goes through ``httpx.MockTransport``: no sockets, no server.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from pipeline.errors import (
    BatchlineError,
    ConfigurationError,
    PermanentError,
    RateLimited,
    TransientError,
)
from pipeline.webhook import WebhookPublisher, retry_after_seconds

ENDPOINT = "https://hooks.blog.example.org/articles"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
DOCUMENT = "<!DOCTYPE html>\n<html><body><p>Hello</p></body></html>\n"
METADATA = {"publisher_domain": "blog.example.org", "customer_id": "customer-1"}

Responder = Callable[[httpx.Request], httpx.Response]


def make_publisher(respond: Responder, endpoints: dict[str, str] | None = None) -> WebhookPublisher:
    table = {"blog.example.org": ENDPOINT} if endpoints is None else endpoints
    client = httpx.Client(transport=httpx.MockTransport(respond))
    return WebhookPublisher(table.get, timeout=7.5, client=client, clock=lambda: NOW)


def publish(publisher: WebhookPublisher, **overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "key": "key-1",
        "batch_id": "batch-1",
        "order_id": "order-1",
        "html_document": DOCUMENT,
        "metadata": METADATA,
    }
    arguments.update(overrides)
    return publisher.publish(**arguments)


def answer(status: int, body: Any = None, headers: dict[str, str] | None = None) -> Responder:
    def respond(request: httpx.Request) -> httpx.Response:
        if isinstance(body, str):
            return httpx.Response(status, text=body, headers=headers)
        return httpx.Response(status, json=body, headers=headers)

    return respond


def raising(error: Exception) -> Responder:
    def respond(request: httpx.Request) -> httpx.Response:
        raise error

    return respond


# --- the request and the receipt ---------------------------------------------------------


def test_publish_posts_the_page_as_json_with_the_idempotency_key() -> None:
    seen: list[httpx.Request] = []

    def respond(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"url": "https://blog.example.org/p/1"})

    publish(make_publisher(respond))

    (request,) = seen
    assert request.method == "POST"
    assert str(request.url) == ENDPOINT
    assert request.headers["Idempotency-Key"] == "key-1"
    assert json.loads(request.content) == {
        "batch_id": "batch-1",
        "order_id": "order-1",
        "html": DOCUMENT,
        "metadata": METADATA,
    }
    # The configured timeout applies even to a client the caller passed in.
    assert request.extensions["timeout"] == httpx.Timeout(7.5).as_dict()


def test_a_created_page_gives_the_full_receipt() -> None:
    receipt = publish(make_publisher(answer(201, {"url": "https://blog.example.org/p/1"})))

    assert receipt == {
        "idempotency_key": "key-1",
        "batch_id": "batch-1",
        "order_id": "order-1",
        "published_url": "https://blog.example.org/p/1",
        "published_at": NOW.isoformat(),
        "endpoint": ENDPOINT,
        "status_code": 201,
        "sha256": hashlib.sha256(DOCUMENT.encode()).hexdigest(),
    }


def test_published_url_and_the_servers_time_are_accepted() -> None:
    body = {"published_url": "https://blog.example.org/p/2", "published_at": "2026-05-01T00:00:00Z"}

    receipt = publish(make_publisher(answer(200, body)))

    assert receipt["published_url"] == "https://blog.example.org/p/2"
    assert receipt["published_at"] == "2026-05-01T00:00:00Z"
    assert receipt["status_code"] == 200


def test_a_conflict_naming_the_original_url_means_already_published() -> None:
    receipt = publish(make_publisher(answer(409, {"url": "https://blog.example.org/p/1"})))

    assert receipt["published_url"] == "https://blog.example.org/p/1"
    assert receipt["status_code"] == 409


# --- the error mapping -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (500, {"error": "boom"}, TransientError),
        (502, "bad gateway", TransientError),
        (503, None, TransientError),
        (408, None, TransientError),
        (409, {"error": "a request with this key is in progress"}, TransientError),
        (400, {"error": "html is empty"}, PermanentError),
        (410, {"message": "section closed"}, PermanentError),
        (422, {"detail": "too many links"}, PermanentError),
        (401, {"error": "bad token"}, ConfigurationError),
        (404, "not found", ConfigurationError),
        (301, None, ConfigurationError),
        (202, {"status": "queued"}, ConfigurationError),
        (200, "<html>a login page</html>", ConfigurationError),
    ],
)
def test_each_answer_maps_to_its_error(status: int, body: Any, expected: type[Exception]) -> None:
    with pytest.raises(expected) as caught:
        publish(make_publisher(answer(status, body)))
    assert type(caught.value) is expected  # not a subclass: the category decides the retry


def test_a_permanent_error_carries_the_servers_message() -> None:
    with pytest.raises(PermanentError, match="too many links") as caught:
        publish(make_publisher(answer(422, {"error": "too many links"})))
    assert caught.value.details["status_code"] == 422


@pytest.mark.parametrize(
    ("headers", "retry_after"),
    [({"Retry-After": "7"}, 7.0), ({"Retry-After": "soon"}, None), ({}, None)],
)
def test_429_is_rate_limited_with_the_servers_retry_after(
    headers: dict[str, str], retry_after: float | None
) -> None:
    with pytest.raises(RateLimited) as caught:
        publish(make_publisher(answer(429, {"error": "slow down"}, headers)))
    assert caught.value.retry_after == retry_after


@pytest.mark.parametrize(
    "error",
    [
        httpx.ReadTimeout("read timed out"),
        httpx.ConnectTimeout("connect timed out"),
        httpx.ConnectError("connection refused"),
        httpx.RemoteProtocolError("server disconnected"),
    ],
)
def test_timeouts_and_connection_errors_are_transient(error: Exception) -> None:
    with pytest.raises(TransientError):
        publish(make_publisher(raising(error)))


def test_a_publisher_without_a_webhook_is_a_configuration_error() -> None:
    calls: list[httpx.Request] = []

    def respond(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(201, json={"url": "https://x"})

    with pytest.raises(ConfigurationError, match=r"blog\.example\.org"):
        publish(make_publisher(respond, endpoints={}))
    with pytest.raises(ConfigurationError, match="publisher_domain"):
        publish(make_publisher(respond), metadata={"customer_id": "customer-1"})
    assert calls == []


def test_an_endpoint_with_a_wrong_scheme_is_a_configuration_error() -> None:
    publisher = WebhookPublisher({"blog.example.org": "ftp://blog.example.org/in"}.get, 5.0)
    with publisher, pytest.raises(ConfigurationError):
        publish(publisher)


def test_every_mapped_error_belongs_to_the_hierarchy() -> None:
    for respond in (answer(500), answer(429), answer(400), raising(httpx.ReadTimeout("t"))):
        with pytest.raises(BatchlineError):
            publish(make_publisher(respond))


# --- Retry-After --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        ((NOW + timedelta(seconds=90)).strftime("%a, %d %b %Y %H:%M:%S GMT"), 90.0),
        ((NOW - timedelta(seconds=90)).strftime("%a, %d %b %Y %H:%M:%S GMT"), 0.0),
        ("tomorrow", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_reads_seconds_and_http_dates(value: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(value, now=NOW) == seconds
