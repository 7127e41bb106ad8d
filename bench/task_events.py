"""What Flower's task-sent events cost the feeder: ``python -m bench.task_events``.

Publishes the same chunk messages with ``task_send_sent_event`` off and on, in
alternating rounds on one Redis (an embedded Valkey unless ``REDIS_URL`` is set),
and prints one JSON line: the median seconds of each and their ratio. On a shared
machine the absolute times are noise; the ratio of interleaved rounds is the figure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def _redis_url() -> Iterator[str]:
    configured = os.environ.get("REDIS_URL")
    if configured:
        yield configured
        return
    from cli.embedded import EmbeddedValkey

    with EmbeddedValkey() as valkey:
        yield valkey.url


def measure(messages: int, rounds: int) -> dict[str, Any]:
    """Median publish seconds of ``messages`` chunk messages without and with sent events."""
    import redis

    from celery_app import app, reconfigure
    from pipeline.chunk import ChunkMessage
    from pipeline.settings import get_settings
    from tasks.dispatch import publish_chunks

    get_settings.cache_clear()
    reconfigure()
    client = redis.Redis.from_url(get_settings().redis_url or "")
    chunk = tuple(range(1, 51))
    batch = [
        ChunkMessage(stage="writing", batch_id=f"ev-{i}", item_ids=chunk) for i in range(messages)
    ]
    seconds: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(rounds):
        for sent in (False, True):
            app.conf.task_send_sent_event = sent
            client.flushdb()
            started = time.perf_counter()
            publish_chunks(batch)
            seconds[sent].append(time.perf_counter() - started)
    client.flushdb()
    off, on = statistics.median(seconds[False]), statistics.median(seconds[True])
    return {
        "messages": messages,
        "rounds": rounds,
        "median_seconds_without_sent_events": round(off, 4),
        "median_seconds_with_sent_events": round(on, 4),
        "ratio_with_to_without": round(on / off, 2),
        "extra_ms_per_message": round((on - off) * 1000 / messages, 3),
    }


def main() -> None:
    """Run the measurement and print it as one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    with _redis_url() as url:
        os.environ["REDIS_URL"] = url
        print(json.dumps(measure(args.messages, args.rounds)))


if __name__ == "__main__":
    main()
