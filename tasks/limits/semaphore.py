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

from metrics.keys import slot_key_pattern, slot_wake_key
from metrics.redis_client import script

#: Lua: the server's clock in epoch milliseconds, ``now``: every script scores by it.
_CLOCK_LUA: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

#: Lua: parse a waiter's member (:func:`waiter_member`) into holder, keys, limits and rank.
#: A member of the older ``holder|key|key`` form parses with no limits: it still
#: blocks lower lanes but is never handed a slot.
_WAITER_LUA: Final = """
local function waiter(member, due)
  local w = {holder = nil, keys = {}, limits = {}, score = 0, fair = 0, due = due or 0}
  for part in string.gmatch(member, '[^|]+') do
    if not w.holder then
      w.holder = part
    elseif string.sub(part, 1, 1) == '#' then
      local score, fair = string.match(part, '^#([^:]+):(.+)$')
      w.score, w.fair = tonumber(score) or 0, tonumber(fair) or 0
    else
      local key, limit = string.match(part, '^(.*)=(%d+)$')
      w.keys[#w.keys + 1] = key or part
      w.limits[#w.limits + 1] = limit and tonumber(limit) or false
    end
  end
  return w
end
"""

# KEYS: the capped semaphores of the call (ARGV[2] of them), then any waiter sets
# that block them (see acquire). ARGV: lease_ms, the number of semaphores, now in
# epoch seconds (the waiters' clock), then per claim in priority order: holder, n,
# and n pairs (1-based index into KEYS, limit). Public, with acquire_request, for a
# client of another kind (bench.io_models runs it on asyncio).
ACQUIRE_SCRIPT: Final = (
    _CLOCK_LUA
    + _WAITER_LUA
    + """
local lease = tonumber(ARGV[1])
local semaphores = tonumber(ARGV[2])
local live, index_of, blocked = {}, {}, {}
for i = 1, semaphores do
  local key = KEYS[i]
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. now)
  live[i] = redis.call('ZCARD', key)
  index_of[key] = i
end
-- A live waiter blocks the keys it names.
for i = semaphores + 1, #KEYS do
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[i], ARGV[3], '+inf')) do
    for _, key in ipairs(waiter(member).keys) do
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
    -- A slot it holds already (handed over at a release, or a renewal) is its own.
    if redis.call('ZSCORE', KEYS[index], holder) then
      is_new[index] = false
    elseif blocked[index] then
      fits = false
      break
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
)

#: How long a slot handed to a waiter stays held before the waiter takes it (the
#: release wakes it, and its acquire renews the slot to a full lease). A waiter that
#: died or gave up in that moment loses it this soon, not after a whole lease.
HANDOFF_MS: Final = 3_000

# KEYS: the released semaphores (ARGV[1] of them), then the waiter sets to hand
# their slots to, highest lane first. ARGV: that count, now in epoch seconds (the
# waiters' clock), HANDOFF_MS, the wake lists' prefix (``slot_wake_key("")``), then
# pairs (1-based index into KEYS, holder) to remove. The waiters' own semaphores
# (their customer's, say) and wake lists are read and written by name: fine on a
# single Redis server, which is what batchline uses (a cluster would need them declared).
_RELEASE_SCRIPT: Final = (
    _CLOCK_LUA
    + _WAITER_LUA
    + """
local semaphores = tonumber(ARGV[1])
local hold = tonumber(ARGV[3])
local freed = {}
for i = 1, semaphores do freed[KEYS[i]] = true end
local wake = ARGV[4]
for pos = 5, #ARGV, 2 do redis.call('ZREM', KEYS[tonumber(ARGV[pos])], ARGV[pos + 1]) end
local live = {}
local function used(key)
  if live[key] == nil then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. now)
    live[key] = redis.call('ZCARD', key)
  end
  return live[key]
end
local blocked, handed = {}, {}
local function fits(w)
  local wanted = false
  for i, key in ipairs(w.keys) do
    local limit = w.limits[i]
    if not limit or blocked[key] or redis.call('ZSCORE', key, w.holder) then return false end
    if used(key) >= limit then return false end
    if freed[key] then wanted = true end
  end
  return wanted
end
local function better(a, b)
  if a.score ~= b.score then return a.score > b.score end
  if a.fair ~= b.fair then return a.fair < b.fair end
  if a.due ~= b.due then return a.due < b.due end
  return a.holder < b.holder
end
for s = semaphores + 1, #KEYS do
  local entries = redis.call('ZRANGEBYSCORE', KEYS[s], ARGV[2], '+inf', 'WITHSCORES')
  local waiters = {}
  for i = 1, #entries, 2 do
    waiters[#waiters + 1] = waiter(entries[i], tonumber(entries[i + 1]))
  end
  table.sort(waiters, better)
  for _, w in ipairs(waiters) do
    if fits(w) then
      for _, key in ipairs(w.keys) do
        redis.call('ZADD', key, now + hold, w.holder)
        live[key] = live[key] + 1
        if redis.call('PTTL', key) < 2 * hold then redis.call('PEXPIRE', key, 2 * hold) end
      end
      handed[#handed + 1] = w.holder
      -- Wake it now: its pause between polls is a wait on this list.
      redis.call('RPUSH', wake .. w.holder, 1)
      redis.call('PEXPIRE', wake .. w.holder, hold)
    end
  end
  -- A lower lane's waiter gets nothing a waiter of this lane waits for (as in acquire).
  for _, w in ipairs(waiters) do
    for _, key in ipairs(w.keys) do blocked[key] = true end
  end
end
return handed
"""
)

_OCCUPANCY: Final = (
    _CLOCK_LUA
    + """
local counts = {}
for i, key in ipairs(KEYS) do counts[i] = redis.call('ZCOUNT', key, now, '+inf') end
return counts
"""
)

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
            blocks every key it names, and a claim that needs one is denied,
            unless its holder holds that slot already (handed over by
            :func:`release`, or a renewal).

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


def waiter_member(claim: SlotClaim, rank: tuple[float, int] = (0.0, 0)) -> str:
    """A waiter's member in a waiter set: ``holder|key=limit|...|#score:fair_rank``.

    Its capped keys (sorted) with their limits, so a release can hand it a slot
    (:func:`release`), and its rank in the feeder's order (``score`` higher first,
    then ``fair_rank`` lower first), so the best-ranked waiter gets it.
    """
    score, fair_rank = rank
    keys = [f"{key}={limit}" for key, limit in sorted(claim.capped().items())]
    return WAITER_SEP.join([claim.holder, *keys, f"#{score!r}:{fair_rank}"])


def release(
    client: redis.Redis, claims: Sequence[SlotClaim], waiters: Sequence[str] = ()
) -> list[str]:
    """Give the claims' slots back, in one round trip (no call for an empty list).

    Every listed key is cleared, capped or not: a cap may have changed since the
    acquire. With ``waiters`` (waiter sets, highest lane first: ``tasks.slot_order``)
    each slot freed goes straight to the best-ranked live waiter that needs it and
    can start now (its other semaphores have room; no waiter of a lane above waits
    for them), held for :data:`HANDOFF_MS` until its next poll takes it, and the
    waiter is woken at once (``slot_wake_key``, the list its pause waits on). Left free,
    whoever polled first took it, rank or not: the many waiters of a big customer's
    worse-ranked work beat a small customer's few (bench/NOTES.md, "Slots handed to
    the best-ranked waiter"). Returns the holders handed a slot.
    """
    holders_by_key = release_request(claims)
    if not holders_by_key:
        return []
    if waiters:
        keys = list(holders_by_key)
        pairs: list[str | int] = []
        for index, key in enumerate(keys, start=1):
            for name in holders_by_key[key]:
                pairs += [index, name]
        args = [len(keys), repr(time.time()), HANDOFF_MS, slot_wake_key(""), *pairs]
        handed = script(client, _RELEASE_SCRIPT)(keys=[*keys, *waiters], args=args)
        return [_text(holder) for holder in handed]
    pipe = client.pipeline(transaction=False)
    for key, names in holders_by_key.items():
        pipe.zrem(key, *names)
    pipe.execute()
    return []


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
