"""pipeline.http_clients: calls spread over the ring's clients, the caller's client kept as is."""

from __future__ import annotations

import threading
from collections import Counter

import httpx
import pytest

from pipeline.http_clients import SHARDS, ClientRing
from pipeline.webhook import WebhookPublisher
from pipeline.writers.openai_compat import OpenAICompatibleWriter


def _answering(seen: Counter[int], client_id: int) -> httpx.Client:
    def answer(request: httpx.Request) -> httpx.Response:
        seen[client_id] += 1
        return httpx.Response(200, json={})

    return httpx.Client(transport=httpx.MockTransport(answer))


def test_calls_from_many_threads_spread_evenly_over_the_clients() -> None:
    seen: Counter[int] = Counter()
    ring = ClientRing([_answering(seen, n) for n in range(4)], owned=True)

    def post_some() -> None:
        for _ in range(25):
            ring.next().post("http://publisher.test/hook")

    threads = [threading.Thread(target=post_some) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == {0: 50, 1: 50, 2: 50, 3: 50}


def test_a_built_ring_has_its_clients_and_closes_them() -> None:
    ring = ClientRing.build(timeout=5.0)
    clients = {id(client): client for client in (ring.next() for _ in range(SHARDS * 2))}
    assert len(clients) == SHARDS
    ring.close()
    assert all(client.is_closed for client in clients.values())


def test_the_callers_client_serves_every_call_and_stays_open() -> None:
    client = httpx.Client()
    ring = ClientRing.of(client, timeout=5.0)
    assert all(ring.next() is client for _ in range(5))
    ring.close()
    assert not client.is_closed
    client.close()


def test_an_empty_ring_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one client"):
        ClientRing([], owned=True)


def test_writer_and_publisher_close_only_what_they_built() -> None:
    given = httpx.Client()
    writer = OpenAICompatibleWriter("http://writer.test/v1", None, "m", 5.0, 0, client=given)
    publisher = WebhookPublisher(lambda domain: None, 5.0, client=given)
    writer.close()
    publisher.close()
    assert not given.is_closed
    given.close()
