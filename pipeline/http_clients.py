"""Several httpx clients taken in turn, so that no one connection pool serves every call.

httpcore (1.0.9, httpx's transport) matches waiting requests to connections by
scanning its pool on every request and every response close, under the pool's
lock, work that grows with connections x waiting requests. One client shared by the
I/O worker's threads is fine at 50 calls at once and costly beyond: 200 writer
calls at once through one client cost 17.5 ms of CPU each and ran at 46 calls/s;
through 8 clients, 4.5 ms and 90 calls/s (``python -m bench.io_models --variants
threads,threads:8``; bench/NOTES.md, "The writer's and publisher's connection
pools"). One client also kept no connection for the next call once more than its 20
kept-alive were open (1,000 calls, 50 at once: 1,000 connections opened, against 58
through the ring; ``python -m bench.keepalive``), so with TLS every call paid a
handshake; and it allowed 100 calls at once per process whatever the caps said. A
writer whose LLM answers in 10-60 s may need hundreds of calls at once, so the writer
and the publisher send through a ring of clients: each keeps its own connections, and
a call takes the next client in turn.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Final

import httpx

#: Clients per ring: with calls spread evenly, 200 at once make pools of 25.
SHARDS: Final = 8
#: Connections each client keeps open between calls (httpx's default: 20).
KEEPALIVE_PER_SHARD: Final = 32


class ClientRing:
    """httpx clients handed out in turn (thread-safe: ``next`` on a count is atomic)."""

    def __init__(self, clients: Sequence[httpx.Client], *, owned: bool) -> None:
        """Take ``clients`` in turn; ``owned``: :meth:`close` closes them."""
        if not clients:
            raise ValueError("a client ring needs at least one client")
        self._clients = tuple(clients)
        self._owned = owned
        self._turn = itertools.count()

    @classmethod
    def build(cls, timeout: float, shards: int = SHARDS) -> ClientRing:
        """``shards`` new clients with ``timeout``, closed by :meth:`close`."""
        limits = httpx.Limits(max_keepalive_connections=KEEPALIVE_PER_SHARD)
        # One TLS context for the ring: each costs ~1 MB and ~50 ms of CPU to build.
        tls = httpx.create_ssl_context()
        clients = [httpx.Client(timeout=timeout, limits=limits, verify=tls) for _ in range(shards)]
        return cls(clients, owned=True)

    @classmethod
    def of(cls, client: httpx.Client | None, timeout: float) -> ClientRing:
        """A ring of the caller's one ``client`` (not closed here), or a new owned ring."""
        return cls([client], owned=False) if client is not None else cls.build(timeout)

    def next(self) -> httpx.Client:
        """The client for this call."""
        return self._clients[next(self._turn) % len(self._clients)]

    def close(self) -> None:
        """Close the clients if this ring built them."""
        if self._owned:
            for client in self._clients:
                client.close()
