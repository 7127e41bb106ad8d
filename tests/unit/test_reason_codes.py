"""Stable reason codes: every failure names its cause in snake_case, free of ids and figures.

Failure analysis counts by these codes, so the same cause must give the same code
whatever the message says (an order id, a URL, a word count).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from pipeline.classify import reason_code
from pipeline.errors import (
    BatchlineError,
    ConfigurationError,
    PermanentError,
    QualityRejected,
    RateLimited,
    TransientError,
    snake_case,
)
from pipeline.manifest import OrderDocument
from pipeline.outcomes import Failed, outcome_of_error
from pipeline.stages.qc import QcRules, run_qc
from pipeline.stages.writing import run_writing
from pipeline.webhook import WebhookPublisher
from pipeline.writers import OpenAICompatibleWriter
from tests.unit.test_preflight import PUBLISHER, make_context
from tests.unit.test_preflight import make_order as preflight_order
from tests.unit.test_qc import article, link
from tests.unit.test_qc import make_order as qc_order

METADATA = {"publisher_domain": "blog.example.org", "customer_id": "customer-1"}


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("QualityRejected", "quality_rejected"),
        ("InvalidInput", "invalid_input"),
        ("TimeoutError", "timeout_error"),
        ("HTTPError", "http_error"),
        ("DataCorruption", "data_corruption"),
        ("Error2Fix", "error2_fix"),
        ("plain", "plain"),
    ],
)
def test_snake_case_of_class_names(name: str, code: str) -> None:
    assert snake_case(name) == code


def test_an_error_without_a_code_is_named_by_its_class() -> None:
    assert PermanentError("no").code == "permanent_error"
    assert RateLimited("slow down", 3.0).code == "rate_limited"


def test_a_given_code_wins_and_survives_the_message() -> None:
    error = TransientError("webhook http://x/1 answered 503", code="webhook_status_503")
    assert error.code == "webhook_status_503"
    assert str(error) == "webhook http://x/1 answered 503"


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (TimeoutError("slow"), "timeout_error"),
        (ConnectionError("reset"), "connection_error"),
        (KeyError("x"), "key_error"),
        (ConfigurationError("x", code="publisher_endpoint_missing"), "publisher_endpoint_missing"),
    ],
)
def test_reason_code_of_any_exception(error: BaseException, code: str) -> None:
    assert reason_code(error) == code


def test_a_failed_outcome_stores_its_code_and_its_tries() -> None:
    error = QualityRejected("word_count: 120 words", code="word_count")
    outcome = outcome_of_error(5, error, attempt=2, max_retries=3)
    assert isinstance(outcome, Failed)
    assert outcome.code == "word_count"
    assert (outcome.output()["code"], outcome.output()["attempts"]) == ("word_count", 2)


# --- the raise sites ----------------------------------------------------------------


def test_a_qc_rejection_is_coded_by_its_first_failed_check() -> None:
    with pytest.raises(QualityRejected) as raised:
        run_qc(qc_order(), article(link()), rules=QcRules(min_words=1000))
    assert raised.value.code == "word_count"


def test_a_preflight_refusal_is_coded_by_its_failed_check() -> None:
    from pipeline.stages.preflight import run_preflight

    with pytest.raises(BatchlineError) as raised:
        run_preflight(preflight_order(language="sv"), make_context(publisher=PUBLISHER))
    assert raised.value.code == "publisher_language"


def test_the_offline_writer_refusing_a_language_is_coded() -> None:
    order = preflight_order(language="fr")
    with pytest.raises(BatchlineError) as raised:
        run_writing(order, {"topic": "running", "language": "fr", "target_words": 400})
    assert raised.value.code == "writer_language"


def _publish(respond: Any, endpoints: dict[str, str] | None = None) -> None:
    table = {"blog.example.org": "https://hooks.example/a"} if endpoints is None else endpoints
    client = httpx.Client(transport=httpx.MockTransport(respond))
    publisher = WebhookPublisher(table.get, timeout=1.0, client=client)
    publisher.publish(
        key="k", batch_id="b", order_id="o", html_document="<p>x</p>", metadata=METADATA
    )


def _raise(error: Exception) -> Any:
    def respond(request: httpx.Request) -> httpx.Response:
        raise error

    return respond


@pytest.mark.parametrize(
    ("respond", "code"),
    [
        (lambda request: httpx.Response(503, text="down"), "webhook_status_503"),
        (lambda request: httpx.Response(429, text="slow"), "webhook_status_429"),
        (lambda request: httpx.Response(401, text="who"), "webhook_status_401"),
        (lambda request: httpx.Response(422, text="bad"), "webhook_status_422"),
        (lambda request: httpx.Response(409, json={}), "webhook_key_in_use"),
        (lambda request: httpx.Response(200, json={}), "webhook_no_url"),
        (_raise(httpx.ReadTimeout("slow")), "webhook_timeout"),
        (_raise(httpx.ConnectError("refused")), "webhook_unreachable"),
    ],
)
def test_webhook_failures_are_coded_by_what_the_endpoint_did(respond: Any, code: str) -> None:
    with pytest.raises(BatchlineError) as raised:
        _publish(respond)
    assert raised.value.code == code


def test_a_publisher_without_a_webhook_is_coded_endpoint_missing() -> None:
    with pytest.raises(ConfigurationError) as raised:
        _publish(lambda request: httpx.Response(200), endpoints={})
    assert raised.value.code == "publisher_endpoint_missing"


def _write(respond: Any) -> None:
    client = httpx.Client(transport=httpx.MockTransport(respond))
    writer = OpenAICompatibleWriter(
        "https://llm.example/v1", None, "m", timeout=1.0, max_retries=0, client=client
    )
    order = OrderDocument.model_validate(
        {**preflight_order().model_dump(mode="json"), "language": "en"}
    )
    writer.write(order, {"topic": "running", "language": "en", "target_words": 400})


@pytest.mark.parametrize(
    ("respond", "code"),
    [
        (lambda request: httpx.Response(429, text="slow"), "writer_status_429"),
        (lambda request: httpx.Response(502, text="down"), "writer_status_502"),
        (lambda request: httpx.Response(401, text="key"), "writer_status_401"),
        (lambda request: httpx.Response(400, text="no"), "writer_status_400"),
        (lambda request: httpx.Response(200, json={"choices": []}), "writer_malformed_completion"),
        (_raise(httpx.ReadTimeout("slow")), "writer_timeout"),
        (_raise(httpx.ConnectError("refused")), "writer_unreachable"),
    ],
)
def test_writer_failures_are_coded_by_what_the_service_did(respond: Any, code: str) -> None:
    with pytest.raises(BatchlineError) as raised:
        _write(respond)
    assert raised.value.code == code
