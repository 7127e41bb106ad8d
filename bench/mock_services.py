"""Local stand-ins for the two external services scenario E calls, over real HTTP.

* :class:`MockWriter`: an OpenAI-compatible ``POST /v1/chat/completions`` that
  answers after a latency with jitter. The article is the offline writer's, built
  from what the request's prompt asks (topic, language, length, link), so it
  passes QC like the offline path does. Every call's start and end (monotonic
  clock) is logged: calls in flight come from the server's own log, not from
  what the workers believe.
* :class:`MockPublisher`: a publisher webhook that answers after a latency,
  now and then with 503 + ``Retry-After`` (nothing published), and honours
  ``Idempotency-Key`` the way Stripe does (a repeat gets the stored answer), so
  it can count *effective publishes* per order.

Both bind ``127.0.0.1`` on a free port and run in a thread of the harness.
"""

from __future__ import annotations

import hashlib
import html
import json
import random
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

from pipeline.manifest import OrderDocument
from pipeline.writers.offline import OfflineWriter

#: Listen backlog: the stdlib default (5) drops connects when 50+ calls open at once,
#: and a dropped SYN costs the client a 1 s retransmit: latency the bench would invent.
_BACKLOG = 1024

_TOPIC = re.compile(
    r"^Write an article about (?P<topic>.*) in [^()\n]+ \(language code (?P<language>[^)\s]+)\)\.$",
    re.MULTILINE,
)
_AIM = re.compile(r"^Length: about (\d+) words", re.MULTILINE)
_AT_LEAST = re.compile(r"^Length:.*\bat least (\d+)", re.MULTILINE)
_AT_MOST = re.compile(r"^Length:.*\bat most (\d+)", re.MULTILINE)
_LINK = re.compile(r'written exactly as <a href="(?P<href>[^"]*)">(?P<anchor>.*?)</a>; no other')
_PUBLISHER = re.compile(r"^The article will be published on (\S+)\.$", re.MULTILINE)
_REWRITE = "Fix these problems:"


class PromptError(ValueError):
    """The request's prompt lacks something the mock needs to write the article."""


def _match(pattern: re.Pattern[str], text: str, what: str) -> re.Match[str]:
    found = pattern.search(text)
    if found is None:
        raise PromptError(f"the prompt names no {what}")
    return found


def _optional_int(pattern: re.Pattern[str], text: str) -> int | None:
    found = pattern.search(text)
    return int(found[1]) if found else None


def read_prompt(text: str) -> tuple[OrderDocument, dict[str, Any], list[str]]:
    """The order, preflight-like prompt and rewrite notes a writer's user message asks for.

    Reads the message :func:`pipeline.writers.openai_compat.user_message` builds.
    The order id is derived from the target URL (unique per bench order), so the
    offline writer's seeded choices differ between orders as they do offline.

    Raises:
        PromptError: a needed line is missing.
    """
    subject, link = _match(_TOPIC, text, "topic"), _match(_LINK, text, "link")
    target_url, anchor = html.unescape(link["href"]), html.unescape(link["anchor"])
    order = OrderDocument(
        order_id="mock-" + hashlib.sha1(target_url.encode()).hexdigest()[:16],
        customer_id="mock",
        target_url=target_url,
        anchor_text=anchor,
        publisher_domain=_match(_PUBLISHER, text, "publisher")[1],
        language=subject["language"],
        topic=subject["topic"],
    )
    prompt: dict[str, Any] = {
        "topic": subject["topic"],
        "language": subject["language"],
        "anchor_text": anchor,
        "target_url": target_url,
        "target_words": int(_match(_AIM, text, "length")[1]),
        "min_words": _optional_int(_AT_LEAST, text),
        "max_words": _optional_int(_AT_MOST, text),
    }
    _, rewrite, notes = text.partition(_REWRITE)
    feedback = [line[2:] for line in notes.splitlines() if rewrite and line.startswith("- ")]
    return order, prompt, feedback


def compose_article(messages: list[dict[str, Any]]) -> str:
    """The offline writer's article (HTML) for the last user message of a chat request.

    Raises:
        PromptError: no user message, or it lacks a needed line.
    """
    users = [str(m.get("content", "")) for m in messages if m.get("role") == "user"]
    if not users:
        raise PromptError("no user message")
    order, prompt, feedback = read_prompt(users[-1])
    # A rewrite needs another text than the draft QC refused: another seed per notes.
    notes = hashlib.sha1("\n".join(feedback).encode()).hexdigest()
    attempt = 1 if not feedback else 2 + int(notes, 16) % 97
    article = OfflineWriter().write(order, prompt, feedback=feedback, attempt=attempt)
    return str(article["html"])


class _Handler(BaseHTTPRequestHandler):
    """Shared plumbing: keep-alive (as real services and httpx's pool expect), no access log."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the bench reads the servers' logs, not stderr."""

    def read_json(self) -> Any:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        return json.loads(raw) if raw else None

    def reply(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a killed worker): nobody is left to answer


class LocalServer:
    """A threaded HTTP server on 127.0.0.1 and a free port; use as a context manager."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        server_class = type("_Server", (ThreadingHTTPServer,), {"request_queue_size": _BACKLOG})
        self._server: ThreadingHTTPServer = server_class(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@dataclass(frozen=True)
class WriterCall:
    """One chat completion as the mock saw it (``time.monotonic()`` seconds)."""

    start: float
    end: float
    status: int


@dataclass
class _WriterState:
    latency_s: float
    jitter: float
    rng: random.Random
    #: every ``slow_every``-th call (0: none) takes ``slow_s`` instead: a long tail
    slow_every: int = 0
    slow_s: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)
    calls: list[WriterCall] = field(default_factory=list)
    open_now: int = 0
    #: calls that have started, for the slow tail
    started: int = 0

    def delay(self) -> float:
        with self.lock:
            self.started += 1
            if self.slow_every and self.started % self.slow_every == 0:
                return self.slow_s
            return self.latency_s * (1 + self.rng.uniform(-self.jitter, self.jitter))


class _WriterHandler(_Handler):
    state: _WriterState

    def do_POST(self) -> None:
        started = time.monotonic()
        state = self.state
        with state.lock:
            state.open_now += 1
        try:
            status, body = self._answer(started + state.delay())
        finally:
            with state.lock:
                state.open_now -= 1
                state.calls.append(WriterCall(started, time.monotonic(), status))
        self.reply(status, body)

    def _answer(self, due: float) -> tuple[int, dict[str, Any]]:
        """Compose the completion, then wait until ``due`` (composing is part of the latency)."""
        if self.path.rstrip("/") != "/v1/chat/completions":
            return 404, {"error": {"message": f"no such endpoint {self.path}"}}
        try:
            request = self.read_json()
            content = compose_article(list(request["messages"]))
        except (ValueError, KeyError, TypeError) as error:
            return 400, {"error": {"message": f"mock writer cannot answer: {error}"}}
        time.sleep(max(0.0, due - time.monotonic()))
        return 200, _completion(str(request.get("model") or "bench-mock"), content)


def _completion(model: str, content: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 0, "completion_tokens": len(content.split())},
    }


class MockWriter(LocalServer):
    """An OpenAI-compatible writer answering after ``latency_s`` ± ``jitter`` (uniform)."""

    def __init__(
        self,
        latency_s: float,
        *,
        jitter: float = 0.2,
        seed: int = 1,
        slow_every: int = 0,
        slow_s: float = 0.0,
    ) -> None:
        """Args: latency_s: mean answer time; jitter: ± share of it; seed: of the jitter;
        slow_every, slow_s: every ``slow_every``-th call (0: none) answers after ``slow_s``
        (the chaos suite's calls that outlast a chunk's soft time limit)."""
        self._state = _WriterState(latency_s, jitter, random.Random(seed), slow_every, slow_s)
        super().__init__(type("Handler", (_WriterHandler,), {"state": self._state}))

    @property
    def url(self) -> str:
        """``WRITER_URL`` for the workers (the API base)."""
        return f"{self.base_url}/v1"

    def calls(self) -> list[WriterCall]:
        """Every finished call so far, in the order they ended."""
        with self._state.lock:
            return list(self._state.calls)

    def open_now(self) -> int:
        """Calls being answered right now."""
        with self._state.lock:
            return self._state.open_now


@dataclass
class _PublisherState:
    latency_s: float
    unavailable_rate: float
    retry_after_s: int
    rng: random.Random
    lock: threading.Lock = field(default_factory=threading.Lock)
    stored: dict[str, dict[str, Any]] = field(default_factory=dict)
    publishes: Counter[str] = field(default_factory=Counter)
    counts: Counter[str] = field(default_factory=Counter)
    last_publish_at: float = 0.0

    def decide(self, key: str, order_id: str) -> tuple[int, dict[str, Any]]:
        """Under the lock: replay, refuse with 503, or publish (once per key)."""
        with self.lock:
            self.counts["requests"] += 1
            if key in self.stored:
                self.counts["replays"] += 1
                return 200, self.stored[key]
            if self.rng.random() < self.unavailable_rate:
                self.counts["unavailable"] += 1
                return 503, {"error": "publisher busy, try again"}
            self.publishes[order_id] += 1
            self.counts["effective"] += 1
            self.last_publish_at = time.time()
            url = f"https://publisher.test/articles/{self.counts['effective']}"
            self.stored[key] = {"url": url, "published_at": _now_iso()}
            return 201, self.stored[key]


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class _PublisherHandler(_Handler):
    state: _PublisherState

    def do_POST(self) -> None:
        started = time.monotonic()
        try:
            order_id = str(self.read_json()["order_id"])
        except (ValueError, KeyError, TypeError):
            self.reply(400, {"error": "body must be JSON with an order_id"})
            return
        key = self.headers.get("Idempotency-Key")
        if not key:
            self.reply(400, {"error": "Idempotency-Key header required"})
            return
        state = self.state
        # Decide first, answer after the latency: the publish happens on arrival, as a
        # real site's would, and a client that gives up meanwhile lost only the answer.
        status, body = state.decide(key, order_id)
        time.sleep(max(0.0, started + state.latency_s - time.monotonic()))
        headers = {"Retry-After": str(state.retry_after_s)} if status == 503 else {}
        self.reply(status, body, headers)


class MockPublisher(LocalServer):
    """A publisher webhook: ``latency_s`` per answer, 503 + Retry-After at ``unavailable_rate``."""

    def __init__(
        self,
        *,
        latency_s: float = 0.2,
        unavailable_rate: float = 0.02,
        retry_after_s: int = 1,
        seed: int = 2,
    ) -> None:
        self._state = _PublisherState(
            latency_s, unavailable_rate, retry_after_s, random.Random(seed)
        )
        super().__init__(type("Handler", (_PublisherHandler,), {"state": self._state}))

    @property
    def url(self) -> str:
        """The webhook URL every bench publisher gets in the catalog."""
        return f"{self.base_url}/articles"

    def publishes(self) -> Counter[str]:
        """Effective publishes per order id (a replayed key does not count)."""
        with self._state.lock:
            return Counter(self._state.publishes)

    def counts(self) -> dict[str, int]:
        """``requests``, ``effective``, ``replays`` and ``unavailable`` (503s) so far."""
        with self._state.lock:
            names = ("requests", "effective", "replays", "unavailable")
            return {name: self._state.counts[name] for name in names}

    def last_publish_at(self) -> float:
        """Epoch time of the latest effective publish (0 before the first)."""
        with self._state.lock:
            return self._state.last_publish_at
