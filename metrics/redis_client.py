"""One Redis client per process, from ``REDIS_URL``, and the Lua scripts each client registered."""

from __future__ import annotations

from typing import Final

import redis
from redis.commands.core import Script

from pipeline.settings import get_settings

_client: redis.Redis | None = None

#: Attribute of a client holding the scripts registered on it, by source. Kept on the
#: client itself (not in a module dict, whose Scripts would keep every client alive):
#: a client forgotten after a fork takes its scripts with it; a new one registers its own.
_SCRIPTS_ATTRIBUTE: Final = "_batchline_scripts"
#: The client's pool size. redis-py 8 caps a pool at 100 connections by default and
#: raises "Too many connections" past it; the I/O worker's threads, each running a
#: chunk whose items call concurrently and poll their slots, passed 100 in bench E at
#: 2 s (2026-12-01): slot polls, refills and circuit checks failed and the batch stalled.
#: The server's own ``maxclients`` (10,000 by default) is the real bound, as before 8.
MAX_CONNECTIONS: Final = 10_000


def redis_client() -> redis.Redis:
    """Return this process's Redis client (responses decoded to ``str``)."""
    global _client
    if _client is None:
        _client = redis.Redis.from_url(
            get_settings().require_redis_url(),
            decode_responses=True,
            max_connections=MAX_CONNECTIONS,
            health_check_interval=30,
            socket_timeout=10,
        )
    return _client


def reset_redis_client() -> None:
    """Forget the client, e.g. after a fork, so no socket is shared across processes."""
    global _client
    _client = None


def script(client: redis.Redis, source: str) -> Script:
    """Return the Lua script ``source`` registered on ``client``, registering it only once.

    ``register_script`` builds a new ``Script`` (and hashes the source) on every
    call; the limiters and progress counters run theirs on every chunk. The
    ``Script`` sends ``EVALSHA`` and loads itself again when the server has lost
    it (e.g. Redis restarted), so keeping one per client is safe.

    Args:
        client: the client the script runs on.
        source: the script's Lua text (a module constant).

    Returns:
        A callable ``Script(keys=[...], args=[...])``.
    """
    registered: dict[str, Script] = client.__dict__.setdefault(_SCRIPTS_ATTRIBUTE, {})
    found = registered.get(source)
    if found is None:
        found = registered[source] = client.register_script(source)
    return found
