"""Leased concurrency semaphores: how many items may run at once, per scope, across all workers.

Each semaphore is a sorted set (``metrics.keys.slot_key``): member = holder
(``"<item_id>:<stage>"``), score = the lease's expiry in epoch milliseconds of
the Redis server's clock. A holder that dies without releasing loses its slot
when the lease runs out; the sweeper's :func:`reconcile` frees slots of holders
the ledger says are no longer running sooner. To look at one by hand:
``redis-cli ZRANGE batch:slots:global 0 -1 WITHSCORES``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

import redis

from metrics.keys import slot_key_pattern
from metrics.redis_client import script

# KEYS: the capped semaphores of the call (ARGV[2] of them), then any waiter sets
# that block them (see acquire). ARGV: lease_ms, the number of semaphores, now in
# epoch seconds (the waiters' clock), then per claim in priority order: holder, n,
# and n pairs (1-based index into KEYS, limit). Public, with acquire_request, for a
# client of another kind (bench.io_models runs it on asyncio).
ACQUIRE_SCRIPT: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[1])
local semaphores = tonumber(ARGV[2])
local live, index_of, blocked = {}, {}, {}
for i = 1, semaphores do
  local key = KEYS[i]
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. now)
  live[i] = redis.call('ZCARD', key)
  index_of[key] = i
end
-- A live waiter (member "holder|key|key...", score = until when) blocks its keys.
for i = semaphores + 1, #KEYS do
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[i], ARGV[3], '+inf')) do
    for key in string.gmatch(member, '|([^|]+)') do
      if index_of[key] then blocked[index_of[key]] = true end
    end
  end
end
local granted = {}
local pos = 4
while pos <= #ARGV do
  local holder = ARGV[pos]
  local first = pos + 2
  pos = first + 2 * tonumber(ARGV[pos + 1])
  local fits = true
  local is_new = {}
  for j = first, pos - 1, 2 do
    local index = tonumber(ARGV[j])
    if blocked[index] then
      fits = false
      break
    elseif redis.call('ZSCORE', KEYS[index], holder) then
      is_new[index] = false
    elseif live[index] < tonumber(ARGV[j + 1]) then
      is_new[index] = true
    else
      fits = false
      break
    end
  end
  if fits then
    for index, new in pairs(is_new) do
      local key = KEYS[index]
      redis.call('ZADD', key, now + lease, holder)
      if new then live[index] = live[index] + 1 end
      -- Only ever lengthen the key's TTL: a shorter lease must not drop longer ones.
      if redis.call('PTTL', key) < 2 * lease then redis.call('PEXPIRE', key, 2 * lease) end
    end
  end
  granted[#granted + 1] = fits and 1 or 0
end
return granted
"""

_OCCUPANCY: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local counts = {}
for i, key in ipairs(KEYS) do counts[i] = redis.call('ZCOUNT', key, now, '+inf') end
return counts
"""

_SCAN_COUNT: Final = 500
#: Separates a waiter's holder and keys in a blocking set (no key or holder holds it).
WAITER_SEP: Final = "|"


@dataclass(frozen=True)
class SlotClaim:
    """One holder's request for a slot in several semaphores at once (all or nothing)."""

    #: who holds the slots, e.g. ``"1234:writing"`` (item id : stage)
    holder: str
    #: semaphore keys (``metrics.keys.slot_key``)
    keys: tuple[str, ...]
    #: capacity per key, same length; a limit <= 0 means "no cap" and skips that key
    limits: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.keys) != len(self.limits):
            raise ValueError(
                f"claim {self.holder!r}: {len(self.keys)} keys but {len(self.limits)} limits"
            )

    def capped(self) -> dict[str, int]:
        """Key -> limit for the keys that have a cap (a key listed twice keeps its lower limit)."""
        caps: dict[str, int] = {}
        for key, limit in zip(self.keys, self.limits, strict=True):
            if limit > 0:
                caps[key] = min(limit, caps.get(key, limit))
        return caps


def acquire(
    client: redis.Redis,
    claims: Sequence[SlotClaim],
    lease_seconds: float,
    blockers: Sequence[str] = (),
) -> list[bool]:
    """Try each claim in order (callers pass them in priority order), in one script call.

    A claim is granted when, on every capped key, its holder already holds a slot
    or a slot is free (counting grants made earlier in this call); then every key
    gets the holder with expiry now + lease (a holder already present just has its
    lease refreshed). A denied claim changes nothing.

    Args:
        client: Redis client.
        claims: the claims, highest priority first.
        lease_seconds: how long the slots stay held without a new acquire or a release.
        blockers: sorted sets of waiters that come first (``tasks.slot_order``):
            a live member (``waiter_member``, score = until when in epoch seconds)
            blocks every key it names, and a claim that needs one is denied.

    Returns:
        One flag per claim: True when granted.

    Raises:
        ValueError: lease_seconds is not positive.
    """
    keys, args = acquire_request(claims, lease_seconds, blockers)  # raises for a bad lease
    if not claims:
        return []
    granted = script(client, ACQUIRE_SCRIPT)(keys=keys, args=args)
    return [bool(flag) for flag in granted]


def acquire_request(
    claims: Sequence[SlotClaim], lease_seconds: float, blockers: Sequence[str] = ()
) -> tuple[list[str], list[str | int | float]]:
    """The ``KEYS`` and ``ARGV`` of :data:`ACQUIRE_SCRIPT` for ``claims`` (see :func:`acquire`).

    Raises:
        ValueError: lease_seconds is not positive.
    """
    if lease_seconds <= 0:
        raise ValueError(f"lease_seconds must be positive, got {lease_seconds}")
    indexes: dict[str, int] = {}
    pairs: list[str | int | float] = []
    for claim in claims:
        caps = claim.capped()
        pairs += [claim.holder, len(caps)]
        for key, limit in caps.items():
            pairs += [indexes.setdefault(key, len(indexes) + 1), limit]
    # Waiters' scores are the clock of the process that registered them (time.time()).
    head: list[str | int | float] = [max(1, round(lease_seconds * 1000)), len(indexes)]
    return [*indexes, *(blockers if indexes else ())], [*head, repr(time.time()), *pairs]


def waiter_member(claim: SlotClaim) -> str:
    """A waiter's member in a blocking set: ``holder|key|key...`` (its capped keys, sorted)."""
    return WAITER_SEP.join([claim.holder, *sorted(claim.capped())])


def release(client: redis.Redis, claims: Sequence[SlotClaim]) -> None:
    """Give the claims' slots back, in one round trip (no call for an empty list).

    Every listed key is cleared, capped or not: a cap may have changed since the acquire.
    """
    holders_by_key = release_request(claims)
    if not holders_by_key:
        return
    pipe = client.pipeline(transaction=False)
    for key, names in holders_by_key.items():
        pipe.zrem(key, *names)
    pipe.execute()


def release_request(claims: Sequence[SlotClaim]) -> dict[str, list[str]]:
    """Key -> the holders :func:`release` removes from it (one ``ZREM`` per key)."""
    holders_by_key: dict[str, list[str]] = {}
    for claim in claims:
        for key in dict.fromkeys(claim.keys):
            holders_by_key.setdefault(key, []).append(claim.holder)
    return holders_by_key


def occupancy(client: redis.Redis, keys: Sequence[str]) -> dict[str, int]:
    """Live (unexpired) holders per key, in one round trip; a missing key counts 0."""
    unique = list(dict.fromkeys(keys))
    if not unique:
        return {}
    counts = script(client, _OCCUPANCY)(keys=unique, args=[])
    return {key: int(count) for key, count in zip(unique, counts, strict=True)}


def holders(client: redis.Redis, key: str) -> dict[str, float]:
    """Live holders of one semaphore -> their lease expiry in epoch seconds (server clock)."""
    pipe = client.pipeline(transaction=False)
    pipe.time()
    pipe.zrange(key, 0, -1, withscores=True)
    server_time, entries = pipe.execute()
    now_ms = _epoch_ms(server_time)
    return {_text(member): score / 1000 for member, score in entries if score >= now_ms}


def slot_keys(client: redis.Redis, pattern: str | None = None) -> list[str]:
    """Every semaphore key (or those matching `pattern`, a SCAN glob), sorted."""
    return sorted(key for page in _scan_pages(client, pattern) for key in page)


def reconcile(
    client: redis.Redis, is_live: Callable[[str], bool], pattern: str | None = None
) -> int:
    """Free the slots of expired holders and of holders `is_live` says are gone.

    The sweeper calls this with the ledger as the truth. One SCAN loop; per page
    of keys, one round trip reads the members and one removes the dead ones.
    Expired members are removed by score on the server, so a holder that renews
    its lease in between keeps it.

    Args:
        client: Redis client.
        is_live: holder -> whether it still runs; asked once per holder and call.
        pattern: SCAN glob of the keys to look at (default: every semaphore).

    Returns:
        How many members were removed (a holder counts once per key).
    """
    verdicts: dict[str, bool] = {}

    def live(holder: str) -> bool:
        if holder not in verdicts:
            verdicts[holder] = is_live(holder)
        return verdicts[holder]

    return sum(_reconcile_page(client, page, live) for page in _scan_pages(client, pattern))


def _reconcile_page(client: redis.Redis, keys: list[str], is_live: Callable[[str], bool]) -> int:
    pipe = client.pipeline(transaction=False)
    pipe.time()
    for key in keys:
        pipe.zrange(key, 0, -1, withscores=True)
    server_time, *members = pipe.execute()
    now_ms = _epoch_ms(server_time)
    pipe = client.pipeline(transaction=False)
    for key, entries in zip(keys, members, strict=True):
        if any(score < now_ms for _, score in entries):
            pipe.zremrangebyscore(key, "-inf", f"({now_ms}")
        dead = [_text(m) for m, score in entries if score >= now_ms and not is_live(_text(m))]
        if dead:
            pipe.zrem(key, *dead)
    return sum(int(removed) for removed in pipe.execute())


def _scan_pages(client: redis.Redis, pattern: str | None) -> Iterator[list[str]]:
    cursor = 0
    while True:
        cursor, keys = client.scan(cursor, match=pattern or slot_key_pattern(), count=_SCAN_COUNT)
        if keys:
            yield [_text(key) for key in keys]
        if cursor == 0:
            return


def _epoch_ms(server_time: tuple[int, int]) -> int:
    seconds, microseconds = server_time
    return int(seconds) * 1000 + int(microseconds) // 1000


def _text(value: Any) -> str:
    # Clients built without decode_responses return bytes.
    return value.decode() if isinstance(value, bytes) else str(value)
