"""How many connections the writer's and publisher's HTTP clients open for their calls.

A local server answers every POST after a short latency and counts the distinct
client ports it sees: each is one TCP connection (against a real LLM service or
publisher, one TLS handshake too). The same calls go through one ``httpx.Client``
with httpx's defaults (what the writer and publisher used before
``pipeline.http_clients``) and through a :class:`~pipeline.http_clients.ClientRing`::

    .venv/bin/python -m bench.keepalive --calls 1000 --concurrency 50
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler
from typing import Any

import httpx

from bench.mock_services import LocalServer
from pipeline.http_clients import ClientRing


class _Counting(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real services
    ports: set[int]
    lock: threading.Lock
    latency_s: float

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def do_POST(self) -> None:
        with self.lock:
            self.ports.add(self.client_address[1])
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        time.sleep(self.latency_s)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")


class CountingServer(LocalServer):
    """A local HTTP server counting the connections its callers open; a context manager."""

    def __init__(self, latency_s: float) -> None:
        """Answer every POST after ``latency_s``."""
        self._ports: set[int] = set()
        state = {"ports": self._ports, "lock": threading.Lock(), "latency_s": latency_s}
        super().__init__(type("Handler", (_Counting,), state))

    @property
    def url(self) -> str:
        """Where to POST."""
        return f"{self.base_url}/"

    def connections(self) -> int:
        """Connections opened so far (distinct client ports)."""
        return len(self._ports)


def connections_for(ring: ClientRing, calls: int, concurrency: int, latency_s: float) -> int:
    """Connections ``ring`` opens for ``calls`` POSTs, ``concurrency`` at once (it is closed)."""
    with CountingServer(latency_s) as server, ThreadPoolExecutor(concurrency) as pool:
        try:
            for response in pool.map(
                lambda i: ring.next().post(server.url, json={"i": i}), range(calls)
            ):
                response.raise_for_status()
        finally:
            ring.close()
        return server.connections()


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m bench.keepalive``: see the module's docstring."""
    parser = argparse.ArgumentParser(prog="python -m bench.keepalive", description=__doc__)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--latency", type=float, default=0.2, help="the server's answer time, s")
    args = parser.parse_args(argv)
    rings = {
        "one client, httpx's defaults": ClientRing([httpx.Client(timeout=10.0)], owned=True),
        "ring (pipeline.http_clients)": ClientRing.build(10.0),
    }
    for name, ring in rings.items():
        opened = connections_for(ring, args.calls, args.concurrency, args.latency)
        print(f"{name}: {args.calls} calls, {args.concurrency} at once: {opened} connections")


if __name__ == "__main__":
    main()
