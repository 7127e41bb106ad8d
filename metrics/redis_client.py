"""One Redis client per process, from ``REDIS_URL``."""

from __future__ import annotations

import redis

from pipeline.settings import get_settings

_client: redis.Redis | None = None


def redis_client() -> redis.Redis:
    """Return this process's Redis client (responses decoded to ``str``)."""
    global _client
    if _client is None:
        _client = redis.Redis.from_url(
            get_settings().require_redis_url(),
            decode_responses=True,
            health_check_interval=30,
            socket_timeout=10,
        )
    return _client


def reset_redis_client() -> None:
    """Forget the client, e.g. after a fork, so no socket is shared across processes."""
    global _client
    _client = None
