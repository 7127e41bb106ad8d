"""The process's Redis client serves many threads at once (redis-py 8 caps pools at 100)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import pytest

from metrics.redis_client import redis_client

pytestmark = pytest.mark.integration

#: More than redis-py 8's default pool (100): bench E's I/O worker needed more at 2 s.
THREADS = 150


def test_more_threads_than_redis_py_s_default_pool_each_hold_a_connection_at_once(
    service_env: dict[str, str],
) -> None:
    # Given one client shared by 150 threads, all inside a command at the same moment
    client = redis_client()
    barrier = Barrier(THREADS, timeout=60)

    def hold_one() -> bool:
        connection = client.connection_pool.get_connection()
        try:
            barrier.wait()  # every thread holds its connection here
            connection.send_command("PING")  # type: ignore[no-untyped-call]  # redis-py untyped
            return connection.read_response() in ("PONG", b"PONG", True)
        finally:
            client.connection_pool.release(connection)

    # When they all ask the pool for a connection
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        answers = list(pool.map(lambda _: hold_one(), range(THREADS)))

    # Then none is refused ("Too many connections") and every one answers
    assert answers == [True] * THREADS
