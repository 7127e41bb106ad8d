"""Every key a real batch leaves in Redis is one docs/monitoring.md lists, and the kept ones stay.

The session's workers run a batch with orders built to fail while a thread keeps
scanning the session's Redis database; every key it meets must match a row of the
documented table.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from cli.sample_orders import orders_built_to_fail
from metrics.keys import (
    batch_error_bucket_key,
    customer_cache_key,
    error_bucket_key,
    progress_key,
    publisher_cache_key,
    slot_key,
)
from metrics.redis_client import redis_client
from tests.integration.helpers import make_orders, wait_for_final
from tests.unit.test_monitoring_doc import documented_rows


def _pattern(key: str) -> re.Pattern[str]:
    """A documented key as a pattern: each ``<placeholder>`` is one part without a colon."""
    parts = re.split(r"<[^>]+>", key)
    return re.compile("[^:]+".join(re.escape(part) for part in parts))


@contextmanager
def keys_seen() -> Iterator[set[str]]:
    """Scan the Redis database over and over while the block runs; collect every key name."""
    seen: set[str] = set()
    stop = threading.Event()
    client = redis_client()

    def scan() -> None:
        while not stop.is_set():
            seen.update(client.scan_iter(count=1000))
            time.sleep(0.01)

    scanner = threading.Thread(target=scan, daemon=True)
    scanner.start()
    try:
        yield seen
    finally:
        stop.set()
        scanner.join(timeout=10)


def test_every_key_a_batch_leaves_is_documented_and_the_kept_ones_remain(workers: Any) -> None:
    from tasks import submit_batch

    documented = {key: (_pattern(key), life) for key, _, life in documented_rows()}
    tag = f"keys-{uuid.uuid4().hex[:6]}"
    orders = orders_built_to_fail(tag) + make_orders(12, tag)
    hour = datetime.now(UTC)

    # When a batch with failing orders runs through the real workers, watched all along
    with keys_seen() as seen:
        submit_batch(orders, "tests", "high", {"batch_id": tag})
        assert wait_for_final([tag]) == {tag: "PARTIAL"}
        seen.update(redis_client().scan_iter(count=1000))

    # Then every key met is one a row of the table describes
    undocumented = {k for k in seen if not any(p.fullmatch(k) for p, _ in documented.values())}
    assert not undocumented, f"keys missing from docs/monitoring.md: {sorted(undocumented)}"
    # And the batch's kept keys are still there, each under a row marked kept
    client = redis_client()
    hours = {error_bucket_key(hour), error_bucket_key(datetime.now(UTC))}
    kept = [
        progress_key(tag),
        batch_error_bucket_key(tag),
        publisher_cache_key(orders[-1]["publisher_domain"]),
        customer_cache_key(orders[-1]["customer_id"]),
    ]
    for key in kept:
        assert client.exists(key), key
        assert any(p.fullmatch(key) and life == "kept" for p, life in documented.values()), key
    assert any(client.exists(bucket) for bucket in hours)
    assert int(sum(int(n) for n in client.hgetall(batch_error_bucket_key(tag)).values())) == 6
    # And while it ran, slots were held and kombu held messages unacknowledged
    assert slot_key("global") in seen
    assert {"unacked", "unacked_index"} <= seen
