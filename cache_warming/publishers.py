"""Publisher profiles read through a Redis cache (warmed by ``cache_warming.warming``).

Preflight and QC need the profile of every order's publisher; a chunk asks for
all its domains at once (one MGET). Misses are read from the ledger in one query
and written back with a TTL. The cache is disposable: losing it costs one ledger
read per domain, and a catalog import drops the entries it changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import redis

from ledger.catalog import publishers_by_domain
from ledger.db import transaction
from metrics.keys import publisher_cache_key
from metrics.redis_client import redis_client
from pipeline.catalog import PublisherProfile

CACHE_TTL_SECONDS = 600


def publisher_profiles(domains: Iterable[str]) -> dict[str, PublisherProfile]:
    """Profiles of ``domains`` that are in the catalog (unknown domains are left out)."""
    wanted = sorted(set(domains))
    if not wanted:
        return {}
    client = redis_client()
    found = _cached(client, wanted)
    missing = [domain for domain in wanted if domain not in found]
    if missing:
        with transaction() as session:
            loaded = publishers_by_domain(session, missing)
        _store(client, loaded)
        found.update(loaded)
    return found


def _cached(client: redis.Redis, domains: Sequence[str]) -> dict[str, PublisherProfile]:
    try:
        raw = client.mget([publisher_cache_key(domain) for domain in domains])
    except redis.RedisError:  # a cache, not a dependency
        return {}
    return {
        domain: PublisherProfile.model_validate_json(value)
        for domain, value in zip(domains, raw, strict=True)
        if value
    }


def _store(client: redis.Redis, profiles: dict[str, PublisherProfile]) -> None:
    if not profiles:
        return
    try:
        pipe = client.pipeline(transaction=False)
        for domain, profile in profiles.items():
            pipe.set(publisher_cache_key(domain), profile.model_dump_json(), ex=CACHE_TTL_SECONDS)
        pipe.execute()
    except redis.RedisError:
        return


def forget_publishers(domains: Iterable[str]) -> None:
    """Drop cached profiles (after a catalog import changed them)."""
    keys = [publisher_cache_key(domain) for domain in domains]
    if keys:
        redis_client().delete(*keys)
