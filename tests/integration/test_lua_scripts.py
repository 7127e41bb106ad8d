"""Lua scripts are registered once per Redis client, not on every call.

``register_script`` builds a ``Script`` (and hashes its source) each time it is
called; the limiters and the progress counters run scripts on every chunk, so
each client keeps the ones it registered. A client made after a fork (see
``metrics.redis_client.reset_redis_client``) registers its own.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import redis

from metrics.keys import rate_bucket_key, slot_key
from metrics.redis_client import redis_client, reset_redis_client
from tasks.limits.rate import take
from tasks.limits.semaphore import SlotClaim, acquire, occupancy

pytestmark = pytest.mark.integration

CALLS = 3


@pytest.fixture
def scope(redis_scope: str) -> str:
    return redis_scope


def count_registrations(client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Watch `client.register_script`: how often each script source is registered."""
    registered: Counter[str] = Counter()
    real = client.register_script

    def register(source: Any) -> Any:
        registered[str(source)] += 1
        return real(source)

    monkeypatch.setattr(client, "register_script", register)
    return registered


def use_every_script(client: redis.Redis, scope: str) -> None:
    take(client, rate_bucket_key(scope), per_minute=6000, burst=100)
    claim = SlotClaim(f"1:{scope}", (slot_key("global", scope),), (5,))
    acquire(client, [claim], lease_seconds=30)
    occupancy(client, [slot_key("global", scope)])


def test_each_script_is_registered_once_per_client(
    scope: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = redis.Redis.from_url(_url(), decode_responses=True)
    registered = count_registrations(client, monkeypatch)

    for _ in range(CALLS):
        use_every_script(client, scope)

    assert registered, "no script was registered at all"
    assert set(registered.values()) == {1}, registered.values()


def test_a_new_client_after_a_fork_registers_its_own(
    scope: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = redis_client()
    use_every_script(before, scope)
    reset_redis_client()  # what celery_app does in a freshly forked worker child
    after = redis_client()
    registered = count_registrations(after, monkeypatch)

    for _ in range(CALLS):
        use_every_script(after, scope)

    assert after is not before
    assert len(registered) == 3 and set(registered.values()) == {1}


def _url() -> str:
    from pipeline.settings import get_settings

    return get_settings().require_redis_url()
