"""Test support for browser tests: Debian's headless Chromium, driven over DevTools.

``chromium`` is a pytest fixture (``tests/e2e/conftest.py`` exposes it) that installs
the package with apt-get when it is missing. :class:`Browser` runs one headless
Chromium with ``--remote-debugging-port`` and speaks the DevTools protocol over a
websocket (``websockets``, from the ``api`` extra): evaluate JavaScript in the page,
take a screenshot. No Selenium, no Playwright.
"""

from __future__ import annotations

import base64
import itertools
import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import httpx
import pytest

from cli.children import die_with_parent
from cli.embedded import free_port
from cli.workers import stop_workers
from tests.support_debian import debian_binary

#: Chromium as the tests run it: headless, no sandbox (root), nothing phoning home.
CHROMIUM_FLAGS: Final = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's ``chromium``, installed with apt-get when missing and this runs as root."""
    return debian_binary("chromium", "chromium")


class Browser:
    """One page of a headless Chromium, driven over the DevTools protocol."""

    def __init__(self, socket: Any) -> None:
        self._socket = socket
        self._ids = itertools.count(1)

    def call(self, method: str, timeout: float = 60, **params: Any) -> dict[str, Any]:
        """Send one DevTools command and return its result (events meanwhile are skipped)."""
        ident = next(self._ids)
        self._socket.send(json.dumps({"id": ident, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            message = json.loads(self._socket.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message.get("id") != ident:
                continue
            if "error" in message:
                raise RuntimeError(f"{method}: {message['error']}")
            result: dict[str, Any] = message["result"]
            return result

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (awaited when a promise)."""
        answer = self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in answer:
            raise RuntimeError(f"{expression!r} threw: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 120, interval: float = 0.25) -> Any:
        """Poll a JavaScript expression until it is truthy (errors count as falsy); return it."""
        deadline, error = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            try:
                value = self.evaluate(expression)
            except RuntimeError as thrown:  # the page is still loading, or in between
                value, error = None, thrown
            if value:
                return value
            time.sleep(interval)
        raise TimeoutError(f"{expression!r} stayed falsy for {timeout}s (last error: {error})")

    def screenshot(self, path: Path) -> Path:
        """Save the page as a PNG."""
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        return path


@contextmanager
def open_browser(
    chromium: str, url: str, profile: Path, size: str = "1400,900"
) -> Iterator[Browser]:
    """Headless Chromium showing ``url``, for the block."""
    from websockets.sync.client import connect

    port = free_port()
    command = [
        chromium,
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        f"--window-size={size}",
        f"--remote-debugging-port={port}",
        "--remote-allow-origins=*",
        url,
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent()
    )
    try:
        target = _page_target(port, process, timeout=90)
        with connect(target, max_size=None, open_timeout=30) as socket:
            yield Browser(socket)
    finally:
        stop_workers([process])


def _page_target(port: int, process: subprocess.Popen[bytes], timeout: float) -> str:
    """The websocket address of Chromium's first page, once DevTools answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"chromium exited with code {process.returncode}"
        try:
            targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=2).json()
            pages = [t for t in targets if t.get("type") == "page"]
            if pages:
                return str(pages[0]["webSocketDebuggerUrl"])
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"chromium's DevTools did not answer on port {port} within {timeout}s")
