"""Circuit breakers in Redis, shared by every worker: ``pipeline.breaker``'s rules, one call each.

Each circuit is a hash (``metrics.keys.breaker_key``) with ``failures``,
``first`` (the first failure of the count), ``open_until`` and ``probe_until``,
in milliseconds of the Redis server's clock (one clock for all workers). A
missing hash is a closed circuit, so losing Redis only closes circuits. Every
decision is one Lua call, so two workers can never both take the half-open
probe. To look at one by hand: ``redis-cli HGETALL batch:breaker:publisher:<domain>``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import redis

from metrics.keys import breaker_key
from metrics.redis_client import script
from pipeline.breaker import Admission, BreakerPolicy, CircuitView

# Shared head of every script. ARGV[1]: now in ms ('' = the server's clock),
# ARGV[2]: failures to open, ARGV[3]: window ms, ARGV[4]: cool-down ms.
_HEAD: Final = """
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local limit, window, cooldown = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local s = redis.call('HMGET', KEYS[1], 'failures', 'first', 'open_until', 'probe_until')
local failures, first = tonumber(s[1]) or 0, tonumber(s[2]) or 0
local open_until, probe_until = tonumber(s[3]) or 0, tonumber(s[4]) or 0
local function keep()
  redis.call('HSET', KEYS[1], 'failures', failures, 'first', first,
             'open_until', open_until, 'probe_until', probe_until)
  redis.call('PEXPIRE', KEYS[1], math.max(window, open_until - now, probe_until - now)
             + 2 * cooldown)
end
"""

# Returns {allowed, probe, retry_at_ms}.
_ADMIT: Final = (
    _HEAD
    + """
if open_until == 0 then return {1, 0, 0} end
if now < open_until then return {0, 0, open_until} end
if now < probe_until then return {0, 0, probe_until} end
probe_until = now + cooldown
keep()
return {1, 1, 0}
"""
)

# Returns {failures, first_ms, open_until_ms, probe_until_ms}.
_FAILURE: Final = (
    _HEAD
    + """
if open_until ~= 0 then
  failures, open_until, probe_until = failures + 1, now + cooldown, 0
elseif failures == 0 or now - first > window then
  failures, first = 1, now
else
  failures = failures + 1
end
if open_until == 0 and failures >= limit then open_until = now + cooldown end
keep()
return {failures, first, open_until, probe_until}
"""
)

# Returns {failures, first_ms, open_until_ms, probe_until_ms} as they were, then closes.
_SUCCESS: Final = (
    _HEAD
    + """
if failures ~= 0 or open_until ~= 0 then redis.call('DEL', KEYS[1]) end
return {failures, first, open_until, probe_until}
"""
)


def _view(raw: list[int]) -> CircuitView:
    failures, first, open_until, probe_until = (int(v) for v in raw)
    return CircuitView(failures, first / 1000, open_until / 1000, probe_until / 1000)


class RedisBreaker:
    """The circuits of every worker, in Redis; times in seconds like :class:`MemoryBreaker`.

    ``now`` is for tests: left out, the Redis server's clock decides.
    """

    def __init__(self, client_factory: Callable[[], redis.Redis], policy: BreakerPolicy) -> None:
        """A factory rather than a client, so a breaker built before a fork uses the child's."""
        self._client_factory = client_factory
        self.policy = policy

    def _call(self, source: str, circuit: str, now: float | None) -> list[int]:
        args: list[str | int] = [
            "" if now is None else str(round(now * 1000)),
            self.policy.failures,
            round(self.policy.window * 1000),
            round(self.policy.cooldown * 1000),
        ]
        client = self._client_factory()
        return list(script(client, source)(keys=[breaker_key(circuit)], args=args))

    def admit(self, circuit: str, now: float | None = None) -> Admission:
        """May a call to ``circuit`` go now? (Takes the probe when half-open.)"""
        allowed, probe, retry_at = self._call(_ADMIT, circuit, now)
        return Admission(bool(allowed), bool(probe), int(retry_at) / 1000)

    def failure(self, circuit: str, now: float | None = None) -> CircuitView:
        """Record a transient failure; return the circuit's new state."""
        return _view(self._call(_FAILURE, circuit, now))

    def success(self, circuit: str, now: float | None = None) -> CircuitView:
        """Record a success (closing the circuit); return the state it had before."""
        return _view(self._call(_SUCCESS, circuit, now))

    def view(self, circuit: str) -> CircuitView:
        """The stored state of ``circuit`` (closed if Redis has none)."""
        raw = self._client_factory().hmget(
            breaker_key(circuit), ["failures", "first", "open_until", "probe_until"]
        )
        return _view([int(v or 0) for v in raw])
