"""How long one ``batchline monitor`` frame takes with 1,000 open batches, against ten.

Run: ``.venv/bin/python -m bench.monitor_frame [--batches 1000] [--orders 100] [--frames 20]``.
Starts embedded servers when ``REDIS_URL``/``DATABASE_URL`` are unset. The batches
are PAUSED (open, but no worker would run them) and hold ``--orders`` pooled orders
each, so the frame reads the pool of a real backlog. The figure is a ratio against
the ten-batch baseline measured in the same run: the machine is shared and absolute
milliseconds are noise.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid

from sqlalchemy import text

from ledger.db import transaction

_BATCHES = text(
    """
    INSERT INTO batches (id, project_uuid, priority, status, options, manifest_sha256,
                         total_items)
    SELECT :tag || '-' || n, 'scale', (ARRAY['high', 'normal', 'low'])[1 + n % 3], 'PAUSED',
           '{}', repeat('0', 64), :orders
    FROM generate_series(1, :count) AS n
    """
)
# The first order of each batch is delivered, the rest wait in the pool.
_ITEMS = text(
    """
    INSERT INTO items (batch_id, position, order_id, customer_id, publisher_domain,
                       lane, state, attempts)
    SELECT b.id, p, 'o' || p, 'cust-1', 'blog.example.com', b.priority,
           CASE p WHEN 0 THEN 'DELIVERED' ELSE 'PENDING' END, 0
    FROM batches b CROSS JOIN generate_series(0, :orders - 1) AS p WHERE b.id LIKE :tag || '-%'
    """
)


def add_paused_batches(tag: str, count: int, orders: int = 2) -> None:
    """Insert ``count`` PAUSED batches ``<tag>-<n>`` of ``orders`` orders (one delivered)."""
    with transaction() as session:
        session.execute(_BATCHES, {"tag": tag, "count": count, "orders": orders})
        session.execute(_ITEMS, {"tag": tag, "orders": orders})
        session.execute(text("ANALYZE items"))


def remove_batches(tag: str) -> None:
    """Delete the batches ``<tag>-*`` with their items and events."""
    with transaction() as session:
        for table, column in (("items", "batch_id"), ("events", "batch_id"), ("batches", "id")):
            session.execute(text(f"DELETE FROM {table} WHERE {column} LIKE :t"), {"t": f"{tag}-%"})


def frame_ms(frames: int) -> list[float]:
    """Milliseconds of each of ``frames`` monitor frames (snapshot and drawing)."""
    from rich.console import Console

    from cli.monitor_snapshot import take_snapshot
    from cli.monitor_view import monitor_frame

    console = Console(file=open("/dev/null", "w"), width=160)  # noqa: SIM115  # closed at exit
    times = []
    for _ in range(frames):
        started = time.perf_counter()
        console.print(monitor_frame(take_snapshot()))
        times.append((time.perf_counter() - started) * 1000)
    return times


def measure(batches: int, orders: int, frames: int) -> dict[str, float]:
    """Median frame time with ten open batches, then with ``batches``, and their ratio."""
    tag = f"bench-monitor-{uuid.uuid4().hex[:6]}"
    try:
        add_paused_batches(f"{tag}-a", 10, orders)
        frame_ms(3)  # warm the connections and caches
        baseline = statistics.median(frame_ms(frames))
        add_paused_batches(f"{tag}-b", batches - 10, orders)
        frame_ms(3)
        loaded = statistics.median(frame_ms(frames))
    finally:
        remove_batches(tag)
    return {
        "open_batches": batches,
        "pooled_orders": batches * (orders - 1),
        "baseline_ms_10_batches": round(baseline, 1),
        "frame_ms": round(loaded, 1),
        "ratio": round(loaded / baseline, 2),
    }


def main() -> None:
    """Parse the options, bring up servers if needed, print the figures as JSON."""
    from cli.environment import prepared_environment

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=1000)
    parser.add_argument("--orders", type=int, default=100)
    parser.add_argument("--frames", type=int, default=20)
    options = parser.parse_args()
    with prepared_environment():
        print(json.dumps(measure(options.batches, options.orders, options.frames)))


if __name__ == "__main__":
    main()
