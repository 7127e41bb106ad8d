"""Two installations on one Redis server, each with its own database number.

batchline's key prefixes do not cover Celery's queues, bindings or control messages, so
docs/deployment.md tells installations that share a Redis server to use separate
database numbers. This checks that they then never see each other's work: a task sent by
the second installation stays in its own database, and its broadcast (ping) reaches none
of the first installation's workers, while the first still reaches its own.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest
import redis
from celery import Celery

from celery_app import MAINTENANCE_QUEUE, celery_config
from metrics.keys import queue_key
from pipeline.settings import Settings

pytestmark = pytest.mark.integration

#: The second installation's database; the session's workers use database 15.
OTHER_INSTALLATION_DB = 3


@pytest.fixture
def other_installation(service_env: dict[str, str]) -> Iterator[tuple[Celery, redis.Redis]]:
    """A Celery app configured as a second installation: same server, database 3."""
    url = f"{service_env['REDIS_URL'].rpartition('/')[0]}/{OTHER_INSTALLATION_DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    app = Celery("other-installation", set_as_current=False)  # leave the real app current
    app.conf.update(celery_config(Settings.model_validate({"redis_url": url})))
    try:
        yield app, client
    finally:
        app.close()
        client.flushdb()
        client.close()


def test_installations_on_separate_databases_never_see_each_others_work(
    workers: list[subprocess.Popen[bytes]], other_installation: tuple[Celery, redis.Redis]
) -> None:
    from celery_app import app as first

    other, other_redis = other_installation
    # Given the first installation's workers running, and a second installation's task
    other.send_task("batchline.maintenance.sweep", queue=MAINTENANCE_QUEUE)
    # When time passes for any worker to take it
    time.sleep(2.0)
    # Then it is still queued in the second installation's database, untouched
    assert other_redis.llen(queue_key(MAINTENANCE_QUEUE)) == 1
    # And broadcasts stay within each installation (kombu names fanout channels by database)
    assert other.control.ping(timeout=1.0) == []
    assert len(first.control.ping(timeout=1.0)) == len(workers)
