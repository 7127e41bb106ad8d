"""``celery_app.reconfigure`` against a real broker: publishing works after it.

Launchers and tests call it whenever they export service URLs, also when the
broker's URL did not change (a new ledger only): the next publish must still work.
"""

from __future__ import annotations

import uuid

import pytest
import redis

from tests.support import apply_environment

pytestmark = pytest.mark.integration


def _publish(queue: str) -> None:
    from celery_app import app

    with app.producer_or_acquire() as producer:
        producer.publish({"n": 1}, routing_key=queue, serializer="json", declare=[])


def test_a_publish_after_reconfiguring_on_the_same_broker_reaches_its_queue(
    service_env: dict[str, str],
) -> None:
    # Given a publish on the session's broker (its pools now hold a connection)
    queue = f"reconfigure-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(service_env["REDIS_URL"])
    try:
        _publish(queue)
        # When the process is reconfigured with the same REDIS_URL
        apply_environment({})
        # Then the next publish reaches the queue too
        _publish(queue)
        assert client.llen(queue) == 2
    finally:
        client.delete(queue)
        client.close()
