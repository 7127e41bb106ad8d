"""What the benchmark measures besides time: Redis memory, percentiles, the machine."""

from __future__ import annotations

import importlib.metadata
import math
import os
import platform
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import text

from metrics.redis_client import redis_client
from pipeline.settings import get_settings

_REPO_ROOT = Path(__file__).resolve().parents[1]
_POLL_INTERVAL_S = 0.02


def redis_used_memory(client: redis.Redis) -> int:
    """Return the server's ``used_memory`` in bytes (``INFO memory``)."""
    info: dict[str, Any] = client.info("memory")
    return int(info["used_memory"])


def wait_for_count(key: str, target: int, timeout: float) -> float:
    """Poll Redis counter ``key`` every 20 ms until it reaches ``target``.

    Returns:
        ``time.perf_counter()`` when the counter was first seen at ``target``.

    Raises:
        TimeoutError: the counter is still short after ``timeout`` seconds.
    """
    client = redis_client()
    deadline = time.perf_counter() + timeout
    while True:
        now = time.perf_counter()
        if int(client.get(key) or 0) >= target:
            return now
        if now > deadline:
            count = int(client.get(key) or 0)
            raise TimeoutError(f"{key} at {count} of {target} after {timeout:.0f} s")
        time.sleep(_POLL_INTERVAL_S)


def percentile(values: Sequence[float], q: float) -> float:
    """Return the ``q``-th percentile of ``values`` by linear interpolation.

    Linear between the two nearest ranks, as numpy's default method, so p50 of
    an even-sized sample is the mean of its two middle values.

    Args:
        values: the sample; need not be sorted.
        q: percentile in [0, 100].

    Raises:
        ValueError: ``values`` is empty or ``q`` is outside [0, 100].
    """
    if not values:
        raise ValueError("percentile of an empty sample")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be in [0, 100], got {q}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _redis_server_version() -> str:
    client = redis.Redis.from_url(get_settings().require_redis_url())
    try:
        info: dict[str, Any] = client.info("server")
    finally:
        client.close()
    # Valkey also reports a compatible redis_version (7.2.4); its own comes first.
    if "valkey_version" in info:
        return f"valkey {info['valkey_version']}"
    return f"redis {info['redis_version']}"


def _postgres_version() -> str:
    from ledger.db import engine

    with engine().connect() as connection:
        return str(connection.execute(text("SHOW server_version")).scalar_one())


def _git_commit() -> str:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=_REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def _memory_gb() -> float:
    import psutil

    return round(float(psutil.virtual_memory().total) / 2**30, 1)


def machine_info() -> dict[str, Any]:
    """Facts that make two runs comparable: hardware, versions, servers, commit.

    Reads the servers of the current settings, so call it inside ``bench_services``.
    """
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gb": _memory_gb(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "celery": importlib.metadata.version("celery"),
        "kombu": importlib.metadata.version("kombu"),
        "redis_py": importlib.metadata.version("redis"),
        "redis_server": _redis_server_version(),
        "postgres": _postgres_version(),
        "commit": _git_commit(),
    }
