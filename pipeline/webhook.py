"""Publishing over HTTP: POST the page to the publisher's webhook with an Idempotency-Key.

The publisher is expected to honour the key the way Stripe does: the first request
with a key publishes, a repeat returns the stored response without publishing
again. That is what makes a retry after a lost response safe; the ledger's
remembered receipt (``ledger.idempotency``) only covers a crash *after* the
response arrived.

Every failure is mapped to the error hierarchy so the retry policy can act on it:

=======================================  ==========================================
Outcome                                  Raised
=======================================  ==========================================
200/201 with ``url``/``published_url``   receipt
409 with the original ``url``            receipt (published earlier)
409 without a url                        TransientError (same key still in flight)
429                                      RateLimited(retry_after=Retry-After)
408, 5xx, timeouts, connection errors    TransientError
401, 403, 404, 405; 1xx, 3xx, other 2xx  ConfigurationError (wrong endpoint or
                                         credentials: every order would fail alike)
200/201 without a url                    ConfigurationError (not our contract)
other 4xx                                PermanentError with the server's message
no endpoint, or a URL httpx cannot use   ConfigurationError
=======================================  ==========================================
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from pipeline.errors import ConfigurationError, PermanentError, RateLimited, TransientError
from pipeline.http_clients import ClientRing
from pipeline.limits import CallGate, NoRateGate
from pipeline.pacing import CALL_LEASE_MARGIN_SECONDS, paced

_SUCCESS: Final = frozenset({200, 201})
_CONFLICT: Final = 409
_TOO_MANY: Final = 429
_RETRYABLE_4XX: Final = frozenset({408})  # Request Timeout: the server asks us to repeat
_MISCONFIGURED_4XX: Final = frozenset({401, 403, 404, 405})
_MESSAGE_LIMIT: Final = 500  # enough to diagnose, small enough for the ledger's error column


class PublishedBody(BaseModel):
    """The publisher's answer to a publish: where the page now lives."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    url: str | None = None
    published_url: str | None = None
    published_at: str | None = None

    @property
    def location(self) -> str | None:
        """The published page's URL under either accepted name."""
        return self.url or self.published_url


def _utc_now() -> datetime:
    return datetime.now(UTC)


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """Parse a ``Retry-After`` header (delta-seconds or an HTTP date) into seconds.

    Returns ``None`` when the header is missing or unreadable, so the retry policy
    falls back to its own backoff.
    """
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a naive parse means no zone was given
        when = when.replace(tzinfo=UTC)
    return max((when - (now or _utc_now())).total_seconds(), 0.0)


def _server_message(response: httpx.Response) -> str:
    """The server's own words about a failure: a JSON ``error``/``message``/``detail`` or text."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for field in ("error", "message", "detail"):
            if body.get(field):
                found = body[field]
                text = found if isinstance(found, str) else json.dumps(found)
                return text[:_MESSAGE_LIMIT]
    return response.text[:_MESSAGE_LIMIT] or response.reason_phrase


def _published_body(response: httpx.Response) -> PublishedBody | None:
    """The response's url and time, or ``None`` when the body names no url."""
    try:
        body = PublishedBody.model_validate(response.json())
    except (ValueError, ValidationError):
        return None
    return body if body.location else None


class WebhookPublisher:
    """Publish pages by POSTing them to each publisher's webhook.

    Args:
        endpoint_for: The webhook URL of a publisher domain, or ``None`` if it has none
            (the catalog lives in the ledger, so the shell supplies this lookup).
        timeout: Seconds allowed for connecting, sending and reading each request.
        client: An ``httpx.Client`` to send through (tests pass a mock transport);
            by default the publisher owns a ring of them (``pipeline.http_clients``)
            and closes it in :meth:`close`.
        clock: When a publish happened, if the publisher's answer does not say.
        gate: The shared rate limit (service ``delivery``, per publisher domain when
            so configured) each publish takes a token from; none by default.
        gate_max_wait: The longest a publish waits for a token before it raises
            :class:`RateLimited` so the item is deferred.
    """

    def __init__(
        self,
        endpoint_for: Callable[[str], str | None],
        timeout: float,
        client: httpx.Client | None = None,
        *,
        clock: Callable[[], datetime] = _utc_now,
        gate: CallGate | None = None,
        gate_max_wait: float = 2.0,
    ) -> None:
        self._endpoint_for = endpoint_for
        self._gate = gate or NoRateGate()
        self._gate_max_wait = gate_max_wait
        self._timeout = timeout
        # A caller's client is used as it is; else a ring of them (pipeline.http_clients).
        self._clients = ClientRing.of(client, timeout)
        self._clock = clock

    def close(self) -> None:
        """Close the HTTP clients if this publisher created them."""
        self._clients.close()

    def __enter__(self) -> WebhookPublisher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def endpoint(self, metadata: dict[str, Any]) -> str:
        """The webhook URL for the publisher named in ``metadata["publisher_domain"]``.

        Raises:
            ConfigurationError: no domain was given, or the publisher has no webhook.
        """
        domain = metadata.get("publisher_domain")
        if not isinstance(domain, str) or not domain:
            raise ConfigurationError(
                "delivery metadata names no publisher_domain", code="publisher_domain_missing"
            )
        endpoint = self._endpoint_for(domain)
        if not endpoint:
            raise ConfigurationError(
                f"publisher {domain} has no webhook_url in the catalog",
                details={"publisher_domain": domain},
                code="publisher_endpoint_missing",
            )
        return endpoint

    def publish(
        self,
        *,
        key: str,
        batch_id: str,
        order_id: str,
        html_document: str,
        metadata: dict[str, Any],
    ) -> dict[str, Any]:
        """POST the page once per ``key`` and return the receipt.

        Raises:
            ConfigurationError: no endpoint, or the endpoint does not speak the contract.
            RateLimited: the publisher answered 429.
            TransientError: a timeout, a connection error, a 5xx, or the same key in flight.
            PermanentError: any other 4xx; carries the server's message.

        Returns:
            ``{"idempotency_key", "batch_id", "order_id", "published_url",
            "published_at", "endpoint", "status_code", "sha256"}``.
        """
        endpoint = self.endpoint(metadata)
        payload = {
            "batch_id": batch_id,
            "order_id": order_id,
            "html": html_document,
            "metadata": metadata,
        }
        domain = str(metadata["publisher_domain"])
        # A conc=N slot of delivery is held for the request only; its lease outlives the timeout.
        lease = self._timeout + CALL_LEASE_MARGIN_SECONDS
        with paced(
            self._gate, "delivery", domain, max_wait=self._gate_max_wait, lease_seconds=lease
        ):
            response = self._post(endpoint, key, payload)
        body = _published_or_raise(response, endpoint)
        return {
            "idempotency_key": key,
            "batch_id": batch_id,
            "order_id": order_id,
            "published_url": body.location,
            # The server's time, when given, keeps a replayed receipt identical to the first.
            "published_at": body.published_at or self._clock().astimezone(UTC).isoformat(),
            "endpoint": endpoint,
            "status_code": response.status_code,
            "sha256": hashlib.sha256(html_document.encode("utf-8")).hexdigest(),
        }

    def _post(self, endpoint: str, key: str, payload: dict[str, Any]) -> httpx.Response:
        try:
            return self._clients.next().post(
                endpoint,
                json=payload,
                headers={"Idempotency-Key": key},
                timeout=self._timeout,
            )
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as error:
            # Checked first: UnsupportedProtocol is a TransportError, but no retry can fix it.
            raise ConfigurationError(
                f"bad webhook URL {endpoint}: {error}", code="webhook_url_invalid"
            ) from error
        except httpx.TimeoutException as error:
            raise TransientError(
                f"webhook {endpoint} timed out: {error!r}", code="webhook_timeout"
            ) from error
        except httpx.TransportError as error:
            raise TransientError(
                f"webhook {endpoint} unreachable: {error!r}", code="webhook_unreachable"
            ) from error


def _published_or_raise(response: httpx.Response, endpoint: str) -> PublishedBody:
    """The body of a successful (or already done) publish; otherwise the mapped error."""
    status = response.status_code
    details = {"endpoint": endpoint, "status_code": status}
    code = f"webhook_status_{status}"
    if status in _SUCCESS or status == _CONFLICT:
        body = _published_body(response)
        if body is not None:
            return body
        if status == _CONFLICT:
            # Stripe answers 409 while a request with the same key is still running.
            message = f"webhook {endpoint}: key in use: {_server_message(response)}"
            raise TransientError(message, details=details, code="webhook_key_in_use")
        message = f"webhook {endpoint} answered {status} without a url"
        raise ConfigurationError(message, details=details, code="webhook_no_url")
    if status == _TOO_MANY:
        retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        raise RateLimited(f"webhook {endpoint} rate limited the delivery", retry_after, code=code)
    message = f"webhook {endpoint} answered {status}: {_server_message(response)}"
    if status >= 500 or status in _RETRYABLE_4XX:
        raise TransientError(message, details=details, code=code)
    if status in _MISCONFIGURED_4XX or not 400 <= status < 500:
        raise ConfigurationError(message, details=details, code=code)
    raise PermanentError(message, details=details, code=code)
