"""Customer profiles read through a Redis cache that a catalog import invalidates at once.

Preflight decides on a customer's profile (a suspended customer's orders fail), so
a stale entry is a wrong decision, not just a slow one. Each entry is tagged with
the catalog generation (``metrics.keys.catalog_generation_key``) read *before* the
ledger read that produced it; :func:`forget_customers` bumps the generation after
an import commits, and a reader uses only entries of the current generation. So
an entry written late by a warm that read the ledger before the import committed
is ignored, not served for its TTL (deleting keys instead would lose that race).
Customers not in the catalog are not cached: one added later is found at once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

import redis

from ledger.catalog import customers_by_id
from ledger.db import transaction
from metrics.keys import catalog_generation_key, customer_cache_key
from metrics.redis_client import redis_client
from pipeline.catalog import CustomerProfile

CACHE_TTL_SECONDS = 600


def customer_profiles(ids: Iterable[str]) -> dict[str, CustomerProfile]:
    """Profiles of the customers among ``ids`` that are in the catalog (others are left out)."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    client = redis_client()
    generation, found = _cached(client, wanted)
    missing = [customer_id for customer_id in wanted if customer_id not in found]
    if missing:
        with transaction() as session:
            loaded = customers_by_id(session, missing)
        if generation is not None:
            _store(client, loaded, generation)
        found.update(loaded)
    return found


def forget_customers() -> None:
    """Invalidate every cached customer profile (call after a catalog import commits)."""
    redis_client().incr(catalog_generation_key())


def _cached(
    client: redis.Redis, ids: Sequence[str]
) -> tuple[int | None, dict[str, CustomerProfile]]:
    """The current generation and the entries of it, in one MGET; (None, {}) without Redis."""
    try:
        raw_generation, *raw = client.mget(
            [catalog_generation_key(), *map(customer_cache_key, ids)]
        )
    except redis.RedisError:  # a cache, not a dependency
        return None, {}
    generation = int(raw_generation or 0)
    found: dict[str, CustomerProfile] = {}
    for customer_id, value in zip(ids, raw, strict=True):
        entry = json.loads(value) if value else None
        if entry and entry.get("generation") == generation:
            found[customer_id] = CustomerProfile.model_validate(entry["profile"])
    return generation, found


def _store(client: redis.Redis, profiles: dict[str, CustomerProfile], generation: int) -> None:
    if not profiles:
        return
    try:
        pipe = client.pipeline(transaction=False)
        for customer_id, profile in profiles.items():
            entry = {"generation": generation, "profile": profile.model_dump(mode="json")}
            pipe.set(customer_cache_key(customer_id), json.dumps(entry), ex=CACHE_TTL_SECONDS)
        pipe.execute()
    except redis.RedisError:
        return
