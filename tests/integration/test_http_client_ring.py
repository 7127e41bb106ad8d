"""The writer's and publisher's ring of HTTP clients keeps its connections for the next calls.

Against a real local server counting the connections it is opened (distinct client
ports): one ``httpx.Client`` with httpx's defaults opened one per call when 50 ran at
once (``python -m bench.keepalive``); the ring must reuse them.
"""

from __future__ import annotations

from bench.keepalive import connections_for
from pipeline.http_clients import ClientRing

CALLS = 300
AT_ONCE = 30


def test_many_calls_through_the_ring_reuse_a_few_connections() -> None:
    opened = connections_for(ClientRing.build(timeout=10.0), CALLS, AT_ONCE, latency_s=0.02)

    # Each call at once needs its own connection, and round robin spreads them unevenly
    # over the clients for a moment; beyond that, the calls reuse them.
    assert AT_ONCE <= opened <= 2 * AT_ONCE, opened
