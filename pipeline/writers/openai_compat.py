"""A writer that calls an OpenAI-compatible chat completions service over HTTP.

This module is the seam to the external service, so it is the one place in
``pipeline`` that does network I/O (with httpx). Rate limits (429), server errors
(5xx), timeouts and dropped connections are retried here with tenacity,
honouring ``Retry-After``; once the retries are spent the error is raised as a
:class:`RateLimited` or :class:`TransientError`, and the pipeline defers the item.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_exponential

from pipeline.errors import (
    BatchlineError,
    ConfigurationError,
    PermanentError,
    RateLimited,
    TransientError,
)
from pipeline.http_clients import ClientRing
from pipeline.limits import CallGate, NoRateGate
from pipeline.manifest import OrderDocument
from pipeline.pacing import CALL_LEASE_MARGIN_SECONDS, paced
from pipeline.stages.vocabulary import VOCABULARIES
from pipeline.writers.base import ensure_link_parsed, fill_prompt, length_bounds

_RETRY_STATUSES: Final = frozenset({408, 429})
_CONFIGURATION_STATUSES: Final = frozenset({401, 403, 404})
_FENCED = re.compile(r"```[\w-]*[^\S\n]*\n(.*?)```", re.DOTALL)
_SNIPPET_CHARS: Final = 300
_SYSTEM: Final = (
    "You write web articles for publishers. Answer with the article as an HTML fragment "
    "only: no <html>, <head> or <body>, no Markdown, no code fences, nothing before or after it."
)


class _Retryable(Exception):
    """A failure worth another try: 408/429/5xx, a timeout or a dropped connection."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        #: the reason code of the final error: ``writer_status_<status>`` unless given
        self.code = code or f"writer_status_{status}"

    def final(self) -> BatchlineError:
        """The error the pipeline sees once no retries are left."""
        if self.status == 429:
            return RateLimited(str(self), self.retry_after, code=self.code)
        return TransientError(str(self), details={"status": self.status}, code=self.code)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (delta-seconds or HTTP-date), or ``None``."""
    if not value or not value.strip():
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())


def strip_code_fences(content: str) -> str:
    """Return the first fenced block's body (```html ... ```), or ``content`` trimmed."""
    match = _FENCED.search(content)
    return (match[1] if match else content).strip()


def user_message(brief: dict[str, Any], feedback: Sequence[str] = ()) -> str:
    """The user message for ``brief`` (a prompt with every field filled), with rewrite notes."""
    language = str(brief["language"])
    vocabulary = VOCABULARIES.get(language)
    name = vocabulary.name if vocabulary else language
    href = html.escape(str(brief["target_url"]), quote=True)
    anchor = html.escape(str(brief["anchor_text"]), quote=False)
    lines = [
        f"Write an article about {brief['topic']} in {name} (language code {language}).",
        length_bounds(brief, feedback).describe(int(brief["target_words"])),
        f"Tone: {brief['tone']}.",
        "Structure: one <h1> title, then 2-4 sections each under an <h2> subheading, "
        "with the text in <p> paragraphs.",
        f'Include exactly one link, inside a paragraph, written exactly as <a href="{href}">'
        f"{anchor}</a>; no other link may point to {brief['target_url']}.",
        f"The article will be published on {brief['publisher_domain']}.",
    ]
    guidelines = [str(line) for line in brief.get("guidelines") or ()]
    if guidelines:
        lines += ["Guidelines:", *(f"- {line}" for line in guidelines)]
    if feedback:
        lines += ["This is a rewrite: the review rejected the last draft. Fix these problems:"]
        lines += [f"- {line}" for line in feedback]
    return "\n".join(lines)


def build_messages(brief: dict[str, Any], feedback: Sequence[str] = ()) -> list[dict[str, str]]:
    """The chat messages (system, user) asking for the article."""
    return [
        {"role": "system", "content": _SYSTEM},
        {"role": "user", "content": user_message(brief, feedback)},
    ]


def _server_message(response: httpx.Response) -> str:
    try:
        error = response.json().get("error")
        message = error.get("message") if isinstance(error, dict) else error
    except (ValueError, AttributeError):
        message = None
    return str(message or response.text)[:_SNIPPET_CHARS]


def _content(response: httpx.Response) -> tuple[str, dict[str, Any]]:
    """The completion's text and the response body; a malformed body is transient."""
    try:
        body = response.json()
        content = body["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as error:
        raise TransientError(
            f"malformed chat completion from the writer service: {error!r}",
            details={"body": response.text[:_SNIPPET_CHARS]},
            code="writer_malformed_completion",
        ) from None
    if not isinstance(content, str) or not content.strip():
        raise TransientError(
            "the writer service returned an empty completion", code="writer_empty_completion"
        )
    return content, body


class OpenAICompatibleWriter:
    """Articles from an OpenAI-compatible ``/chat/completions`` endpoint."""

    name: Final = "openai"

    def __init__(
        self,
        url: str,
        api_key: str | None,
        model: str,
        timeout: float,
        max_retries: int,
        client: httpx.Client | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        temperature: float = 0.7,
        max_wait: float = 30.0,
        gate: CallGate | None = None,
        gate_max_wait: float = 2.0,
    ) -> None:
        """Configure the writer.

        Args:
            url: The API base, e.g. ``http://localhost:8000/v1``.
            api_key: Sent as a bearer token when given.
            model: The model name sent with each request.
            timeout: Seconds allowed for each HTTP request.
            max_retries: Retries after the first try (0 = try once).
            client: An httpx client to send every request through (the writer then does
                not close it); by default a ring of clients (`pipeline.http_clients`).
            sleep: How to wait between tries (tests pass a recorder).
            temperature: Sampling temperature sent with each request.
            max_wait: The longest wait between tries; a longer ``Retry-After`` ends
                the retries at once, so the pipeline can defer the item instead.
            gate: The shared rate limit every request takes a token from (service
                ``writer``); none by default.
            gate_max_wait: The longest the writer waits for a token before it
                raises :class:`RateLimited` so the item is deferred.
        """
        self.endpoint = url.rstrip("/") + "/chat/completions"
        self.model = model
        self.timeout = timeout
        self.max_retries = max_retries
        self.temperature = temperature
        self.max_wait = max_wait
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # A caller's client is used as it is; else a ring of them (pipeline.http_clients).
        self._clients = ClientRing.of(client, timeout)
        self._sleep = sleep
        self._backoff = wait_exponential(multiplier=0.5, max=max_wait)
        self._gate = gate or NoRateGate()
        self._gate_max_wait = gate_max_wait

    def close(self) -> None:
        """Close the HTTP clients if this writer created them."""
        self._clients.close()

    def write(
        self,
        order: OrderDocument,
        prompt: dict[str, Any],
        *,
        feedback: Sequence[str] = (),
        attempt: int = 1,
    ) -> dict[str, Any]:
        """Write the article for ``order``; see :meth:`pipeline.writers.base.Writer.write`.

        Raises:
            RateLimited: still rate limited after the retries (``retry_after`` set
                when the server said how long to wait).
            TransientError: 5xx, timeouts or connection errors after the retries, or
                a malformed response.
            ConfigurationError: 401, 403 or 404 (wrong key, URL or model).
            PermanentError: any other 4xx, such as 400 for a request it refuses.
        """
        brief = fill_prompt(order, prompt)
        payload = {
            "model": self.model,
            "messages": build_messages(brief, feedback),
            "temperature": self.temperature,
        }
        content, body = self._complete(payload)
        fragment, repaired, parsed = ensure_link_parsed(
            strip_code_fences(content), str(brief["target_url"]), str(brief["anchor_text"])
        )
        article: dict[str, Any] = {
            "title": parsed.title,
            "html": fragment,
            "word_count": len(parsed.text.split()),
            "writer": self.name,
            "model": str(body.get("model") or self.model),
            "attempt": attempt,
            "link_repaired": repaired,
        }
        if isinstance(body.get("usage"), dict):
            article["usage"] = body["usage"]
        return article

    def _complete(self, payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        retrying = Retrying(
            sleep=self._sleep,
            stop=self._should_stop,
            wait=self._wait,
            retry=retry_if_exception_type(_Retryable),
            reraise=True,
        )
        try:
            response: httpx.Response = retrying(self._post, payload)
        except _Retryable as error:
            raise error.final() from error
        return _content(response)

    def _should_stop(self, state: RetryCallState) -> bool:
        error = state.outcome.exception() if state.outcome else None
        too_long = isinstance(error, _Retryable) and (error.retry_after or 0.0) > self.max_wait
        return too_long or state.attempt_number > self.max_retries

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, _Retryable) and error.retry_after is not None:
            return error.retry_after
        return float(self._backoff(state))

    def _post(self, payload: dict[str, Any]) -> httpx.Response:
        """One request; raise :class:`_Retryable` or the final error for a failure."""
        try:
            # A conc=N slot of the writer is held for this request only, not its retries' waits.
            with paced(
                self._gate,
                "writer",
                max_wait=self._gate_max_wait,
                lease_seconds=self.timeout + CALL_LEASE_MARGIN_SECONDS,
                sleep=self._sleep,
            ):
                response = self._clients.next().post(
                    self.endpoint, json=payload, headers=self._headers, timeout=self.timeout
                )
        except httpx.TimeoutException as error:
            raise _Retryable(
                f"writer service timed out after {self.timeout}s: {error!r}", code="writer_timeout"
            ) from None
        except httpx.TransportError as error:
            raise _Retryable(
                f"cannot reach the writer service at {self.endpoint}: {error!r}",
                code="writer_unreachable",
            ) from None
        self._check_status(response)
        return response

    def _check_status(self, response: httpx.Response) -> None:
        status = response.status_code
        if response.is_success:
            return
        message = f"writer service answered {status}: {_server_message(response)}"
        if status in _RETRY_STATUSES or status >= 500:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            raise _Retryable(message, status=status, retry_after=retry_after)
        if status in _CONFIGURATION_STATUSES or status < 400:
            raise ConfigurationError(
                f"{message} (check WRITER_URL, WRITER_API_KEY and WRITER_MODEL)",
                details={"status": status, "endpoint": self.endpoint},
                code=f"writer_status_{status}",
            )
        raise PermanentError(message, details={"status": status}, code=f"writer_status_{status}")
