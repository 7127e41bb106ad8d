"""Token buckets, daily quotas and call slots in Redis, shared by every worker.

Each bucket is a hash (``metrics.keys.rate_bucket_key``) with ``tokens`` (a
float) and ``ts`` (epoch milliseconds of the Redis server's clock, when tokens
was last brought up to date). A missing bucket is full. To look at one by hand:
``redis-cli HGETALL batch:rate:<service>[:<key>]``.

A daily quota (``N/day``) is a hash (``metrics.keys.rate_quota_key``) with the
UTC ``day`` (days since the epoch, by the server's clock) and the calls ``used``
in it: a fixed window, so the count starts afresh at 00:00 UTC whatever host asks
(``redis-cli HGETALL batch:quota:<service>``). A ``conc=N`` bound is a leased
semaphore (``tasks.limits.semaphore``) at ``metrics.keys.call_slot_key``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

import redis

from metrics.keys import call_slot_key, rate_bucket_key, rate_quota_key
from metrics.redis_client import script
from pipeline.limits import RateSpec
from tasks.limits.semaphore import SlotClaim, acquire, release

# KEYS[1]: bucket. ARGV: tokens per millisecond, burst, cost (take_request builds them).
# Returns the wait in whole microseconds (0 = taken): Lua numbers reach Python as integers.
TAKE_SCRIPT: Final = """
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


# KEYS[1]: quota. ARGV: calls per UTC day.
# Returns the wait in whole microseconds (0 = taken): until the next UTC midnight when spent.
_TAKE_DAILY: Final = """
local quota = tonumber(ARGV[1])
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local day = math.floor(tonumber(t[1]) / 86400)
local state = redis.call('HMGET', KEYS[1], 'day', 'used')
local used = 0
if tonumber(state[1]) == day then used = tonumber(state[2]) or 0 end
local next_day_us = (day + 1) * 86400 * 1000000
if used >= quota then return next_day_us - now_us end
redis.call('HSET', KEYS[1], 'day', day, 'used', used + 1)
-- Kept an hour past midnight: a window the next day's first call will reset anyway.
redis.call('PEXPIREAT', KEYS[1], math.floor(next_day_us / 1000) + 3600000)
return 0
"""


def take_daily(client: redis.Redis, key: str, per_day: int) -> float:
    """Count one call against the daily quota at `key` if the UTC day has one left.

    Args:
        client: Redis client.
        key: the quota (``metrics.keys.rate_quota_key``).
        per_day: calls allowed per UTC calendar day.

    Returns:
        0.0 when counted; else seconds until 00:00 UTC (nothing was counted).

    Raises:
        ValueError: per_day is not positive.
    """
    if per_day < 1:
        raise ValueError(f"per_day must be positive, got {per_day}")
    wait_us = script(client, _TAKE_DAILY)(keys=[key], args=[per_day])
    return int(wait_us) / 1_000_000


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
    wait_us = script(client, TAKE_SCRIPT)(keys=[key], args=take_request(per_minute, burst, cost))
    return int(wait_us) / 1_000_000


def take_request(per_minute: float, burst: int, cost: int = 1) -> list[str | int]:
    """The ``ARGV`` of :data:`TAKE_SCRIPT` (see :func:`take`); it answers in microseconds.

    Raises:
        ValueError: per_minute is not positive, or cost is not in 1..burst.
    """
    if per_minute <= 0:
        raise ValueError(f"per_minute must be positive, got {per_minute}")
    if not 1 <= cost <= burst:
        raise ValueError(f"cost must be between 1 and burst ({burst}), got {cost}")
    return [repr(per_minute / 60_000), burst, cost]


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
        """Take one token (or one call of a daily quota) for `service`, per `key` if so limited.

        Returns:
            0.0 to go now (also for a service without a spec), else seconds to wait.
        """
        spec = self._specs.get(service)
        if spec is None:
            return 0.0
        scope = (service, key) if spec.per_key else (service,)
        if spec.per_day:
            return take_daily(self._client_factory(), rate_quota_key(*scope), spec.per_day)
        return take(self._client_factory(), rate_bucket_key(*scope), spec.per_minute, spec.burst)

    def hold(self, service: str, key: str, holder: str, lease_seconds: float) -> bool:
        """Take a leased ``conc=N`` slot of `service` for `holder` (True without a bound)."""
        claim = self._claim(service, key, holder)
        if claim is None:
            return True
        return acquire(self._client_factory(), [claim], lease_seconds)[0]

    def release(self, service: str, key: str, holder: str) -> None:
        """Give `holder`'s slot back (one ZREM; nothing for a service without a bound)."""
        claim = self._claim(service, key, holder)
        if claim is not None:
            release(self._client_factory(), [claim])

    def _claim(self, service: str, key: str, holder: str) -> SlotClaim | None:
        spec = self._specs.get(service)
        if spec is None or not spec.concurrency:
            return None
        slot = call_slot_key(service, key) if spec.per_key else call_slot_key(service)
        return SlotClaim(holder=holder, keys=(slot,), limits=(spec.concurrency,))
