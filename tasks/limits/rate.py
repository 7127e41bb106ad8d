"""Token buckets in Redis, shared by every worker: pace calls to external services.

Each bucket is a hash (``metrics.keys.rate_bucket_key``) with ``tokens`` (a
float) and ``ts`` (epoch milliseconds of the Redis server's clock, when tokens
was last brought up to date). A missing bucket is full. To look at one by hand:
``redis-cli HGETALL batch:rate:<service>[:<key>]``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

import redis

from metrics.keys import rate_bucket_key
from metrics.redis_client import script
from pipeline.limits import RateSpec

# KEYS[1]: bucket. ARGV: tokens per millisecond, burst, cost.
# Returns the wait in whole microseconds (0 = taken): Lua numbers reach Python as integers.
_TAKE: Final = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
-- max(0, ...): a server clock that steps back must not drain the bucket.
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local wait_us = 0
if tokens >= cost then
  tokens = tokens - cost
else
  wait_us = math.ceil((cost - tokens) / rate * 1000)
end
-- %.3f keeps microseconds: tostring() would round ts to 14 digits (10 ms).
redis.call('HSET', KEYS[1],
  'tokens', string.format('%.17g', tokens), 'ts', string.format('%.3f', now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate) + 1000)
return wait_us
"""


def take(client: redis.Redis, key: str, per_minute: float, burst: int, cost: int = 1) -> float:
    """Take `cost` tokens from the bucket at `key` if it holds them, in one script call.

    Args:
        client: Redis client.
        key: the bucket (``metrics.keys.rate_bucket_key``).
        per_minute: refill rate, tokens per minute.
        burst: bucket size.
        cost: tokens this call needs.

    Returns:
        0.0 when taken; else seconds until `cost` tokens will be there (nothing was taken).

    Raises:
        ValueError: per_minute is not positive, or cost is not in 1..burst (it could never go).
    """
    if per_minute <= 0:
        raise ValueError(f"per_minute must be positive, got {per_minute}")
    if not 1 <= cost <= burst:
        raise ValueError(f"cost must be between 1 and burst ({burst}), got {cost}")
    per_ms = repr(per_minute / 60_000)
    wait_us = script(client, _TAKE)(keys=[key], args=[per_ms, burst, cost])
    return int(wait_us) / 1_000_000


class RedisRateGate:
    """:class:`pipeline.limits.RateGate` backed by shared Redis token buckets."""

    def __init__(
        self, client_factory: Callable[[], redis.Redis], specs: Mapping[str, RateSpec]
    ) -> None:
        """Gate the services in `specs`; `client_factory` is asked for a client on each call.

        A factory rather than a client, so a gate built before a worker forks
        uses the child's own connection (``metrics.redis_client.redis_client``).
        """
        self._client_factory = client_factory
        self._specs = dict(specs)

    def wait_seconds(self, service: str, key: str = "") -> float:
        """Take one token for `service` (per `key` when its spec is per key).

        Returns:
            0.0 to go now (also for a service without a spec), else seconds to wait.
        """
        spec = self._specs.get(service)
        if spec is None:
            return 0.0
        bucket = rate_bucket_key(service, key) if spec.per_key else rate_bucket_key(service)
        return take(self._client_factory(), bucket, spec.per_minute, spec.burst)
