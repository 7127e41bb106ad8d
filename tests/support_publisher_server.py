"""A real HTTP publisher for tests that honours ``Idempotency-Key`` the way Stripe does.

The first POST with a key publishes (one *effective publish*) and stores the
response; a repeat of the key gets the stored response back, marked with
``Idempotent-Replayed: true``, and publishes nothing. The same key with a
different body is refused (422). Every request is recorded, so a test can tell
requests from effective publishes.

Behaviours a test can switch on:

* :meth:`PublisherServer.fail_next` - the next N requests fail with 500 or 429
  (with ``Retry-After``) before anything is published;
* :meth:`PublisherServer.hold` - the next N requests publish, then the response
  waits X seconds: a client killed meanwhile lost a response for a publish that
  happened.

Usage::

    with PublisherServer() as server:
        publisher = WebhookPublisher(lambda domain: server.url, timeout=5)
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Stored:
    """The response remembered for one idempotency key."""

    status: int
    body: dict[str, Any]
    fingerprint: str  # sha256 of the request body: a reused key must carry the same body


@dataclass(frozen=True)
class Failure:
    """One programmed failure."""

    status: int
    retry_after: str | None = None


@dataclass
class _State:
    """Everything the handler threads share; guarded by ``lock``."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    stored: dict[str, Stored] = field(default_factory=dict)
    requests: Counter[str] = field(default_factory=Counter)
    publishes: Counter[str] = field(default_factory=Counter)
    urls: dict[str, str] = field(default_factory=dict)
    #: programmed outcomes of the next requests: a failure, or None for a normal answer
    failures: list[Failure | None] = field(default_factory=list)
    holds: list[float] = field(default_factory=list)
    #: the orders whose response :meth:`PublisherServer.hold` delayed, in arrival order
    held: list[str] = field(default_factory=list)
    released: threading.Event = field(default_factory=threading.Event)
    published_total: int = 0


class PublisherServer:
    """A threaded HTTP publisher on ``127.0.0.1`` and a free port; use as a context manager."""

    def __init__(self, *, path: str = "/articles") -> None:
        self._path = path
        self._state = _State()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self._state, path))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The webhook endpoint to POST articles to."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{self._path}"

    def __enter__(self) -> PublisherServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._state.released.set()  # held responses end now instead of outliving the test
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def fail_next(self, count: int, *, status: int = 500, retry_after: str | None = None) -> None:
        """Fail the next ``count`` requests with ``status`` (and ``Retry-After``), unpublished."""
        with self._state.lock:
            self._state.failures.extend([Failure(status, retry_after)] * count)

    def stop_failing(self) -> None:
        """Drop the failures still programmed by :meth:`fail_next` (the outage is over)."""
        with self._state.lock:
            self._state.failures.clear()

    def fail_every_other(self, count: int, *, status: int = 503) -> None:
        """The next ``2 * count`` requests alternate: fail, answer, fail, answer (a flaky
        endpoint that never fails twice in a row, so no circuit opens)."""
        with self._state.lock:
            self._state.failures.extend([Failure(status), None] * count)

    def hold(self, seconds: float, *, count: int = 1) -> None:
        """Publish the next ``count`` requests, then delay each response by ``seconds``."""
        with self._state.lock:
            self._state.holds.extend([seconds] * count)

    def held_orders(self) -> list[str]:
        """The orders published so far whose response was held, in arrival order.

        Calls run concurrently within a chunk, so the first request to arrive, the
        one held, is not known from the order list.
        """
        with self._state.lock:
            return list(self._state.held)

    def requests(self, order_id: str) -> int:
        """How many requests arrived for ``order_id`` (failed and replayed ones included)."""
        with self._state.lock:
            return self._state.requests[order_id]

    def effective_publishes(self, order_id: str) -> int:
        """How many times ``order_id`` was actually published."""
        with self._state.lock:
            return self._state.publishes[order_id]

    def published_url(self, order_id: str) -> str | None:
        """The URL of the first publish of ``order_id``, if any."""
        with self._state.lock:
            return self._state.urls.get(order_id)

    def wait_for_publishes(self, order_id: str, count: int, timeout: float = 10.0) -> None:
        """Block until ``order_id`` was published ``count`` times.

        Raises:
            TimeoutError: it was not within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while self.effective_publishes(order_id) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{order_id} not published {count} times in {timeout}s")
            time.sleep(0.01)


def _handler_for(state: _State, path: str) -> type[BaseHTTPRequestHandler]:
    class Handler(_PublisherHandler):
        pass

    Handler.state = state
    Handler.path_served = path
    return Handler


class _PublisherHandler(BaseHTTPRequestHandler):
    state: _State
    path_served: str
    protocol_version = "HTTP/1.1"  # keep-alive, as real publishers and httpx's pool expect

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read counters, not access logs."""

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path != self.path_served:
            self._reply(404, {"error": f"no such endpoint {self.path}"})
            return
        try:
            body = json.loads(raw)
            order_id = str(body["order_id"])
        except (ValueError, KeyError, TypeError):
            self._reply(400, {"error": "body must be JSON with an order_id"})
            return
        key = self.headers.get("Idempotency-Key")
        if not key:
            self._reply(400, {"error": "Idempotency-Key header required"})
            return
        self._respond(key, order_id, body, hashlib.sha256(raw).hexdigest())

    def _respond(self, key: str, order_id: str, body: dict[str, Any], fingerprint: str) -> None:
        state = self.state
        # One lock around check-and-publish: two racing first requests publish once.
        with state.lock:
            state.requests[order_id] += 1
            failure = state.failures.pop(0) if state.failures else None
            stored = state.stored.get(key)
            if failure is None and stored is None:
                stored = state.stored[key] = self._publish(order_id, body, fingerprint)
                hold = state.holds.pop(0) if state.holds else 0.0
                if hold:
                    state.held.append(order_id)
                replayed = False
            else:
                hold, replayed = 0.0, True
        if failure is not None:
            headers = {"Retry-After": failure.retry_after} if failure.retry_after else {}
            self._reply(failure.status, {"error": f"programmed {failure.status}"}, headers)
        elif stored is not None and stored.fingerprint != fingerprint:
            self._reply(422, {"error": "Idempotency-Key reused with a different body"})
        elif stored is not None:
            # The publish has happened; only its response is late (or lost, if the client dies).
            state.released.wait(hold)
            replay = {"Idempotent-Replayed": "true"} if replayed else {}
            self._reply(stored.status, stored.body, replay)

    def _publish(self, order_id: str, body: dict[str, Any], fingerprint: str) -> Stored:
        """Publish (caller holds the lock); the URL is unique per publish, so a double shows."""
        state = self.state
        state.published_total += 1
        state.publishes[order_id] += 1
        domain = (body.get("metadata") or {}).get("publisher_domain") or "publisher.test"
        url = f"https://{domain}/articles/{state.published_total}"
        state.urls.setdefault(order_id, url)
        published = {"url": url, "published_at": datetime.now(UTC).isoformat()}
        return Stored(201, published, fingerprint)

    def _reply(
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
            pass  # the client died waiting (the point of hold); nobody is left to answer
