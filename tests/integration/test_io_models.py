"""bench.io_models: both ways of running calls do the same work, within the same bound.

The comparison means something only if the two models make the same calls: each
call once, at most ``concurrency`` at a time as the writer saw them, every article
with its link, and no slot left held in Redis afterwards. Real Redis and real HTTP
(the bench's mock writer); no timing is asserted.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis

from bench.inflight import peak_in_flight
from bench.io_models import IO_MODELS_REDIS_DB, MODELS, build_calls, measure
from bench.mock_services import MockWriter
from tasks.limits.semaphore import slot_keys

CALLS = 30
CONCURRENCY = 6


@pytest.mark.parametrize(("model", "shards"), [(model, 1) for model in MODELS] + [("threads", 4)])
def test_each_model_makes_every_call_once_within_the_bound_and_frees_its_slots(
    model: str, shards: int, isolated_redis: Callable[[int], str]
) -> None:
    redis_url = isolated_redis(IO_MODELS_REDIS_DB)
    calls = build_calls(CALLS, CONCURRENCY, tag=f"test-{model}-{shards}")
    with MockWriter(0.05, jitter=0.5) as writer:
        run, articles = measure(model, calls, writer.url, redis_url, CONCURRENCY, shards)
        seen = writer.calls()

    assert len(seen) == CALLS and all(call.status == 200 for call in seen)
    assert peak_in_flight([(call.start, call.end) for call in seen]) <= CONCURRENCY
    assert run.linked == CALLS and len(articles) == CALLS and run.shards == shards
    assert run.cpu_ms_per_call > 0
    client = redis.Redis.from_url(redis_url)
    held = {key: client.zcard(key) for key in slot_keys(client)}
    assert not any(held.values()), f"slots still held after the run: {held}"
