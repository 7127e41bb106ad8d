"""Progress stays right when Redis restarts empty in the middle of a batch.

The ledger is the truth; the ``batch:progress:<id>`` hash only caches it. After
Redis loses the hash, whatever touches the batch first (a chunk recording its
outcome, the sweeper, a status request) must leave the hash complete: a chunk
must not start a new hash holding only what happened since the loss.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from tests.integration.helpers import make_orders, wait_for_final, wait_until
from tests.integration.progress_checks import ledger_progress, progress_mismatches

pytestmark = pytest.mark.integration

ORDERS = 300


@pytest.fixture
def flush_redis(service_env: dict[str, str]) -> Iterator[redis.Redis]:
    """The session's Redis; one sweep in finally re-sends whatever a flush orphaned."""
    client = redis.Redis.from_url(service_env["REDIS_URL"])
    try:
        yield client
    finally:
        from recovery.sweeper import sweep

        sweep()
        client.close()


def _submit(tag: str) -> str:
    from tasks import submit_batch

    batch_id = f"{tag}-{uuid.uuid4().hex[:8]}"
    submit_batch(make_orders(ORDERS, batch_id), "it", "low", {"batch_id": batch_id})
    return batch_id


def _delivered(batch_id: str) -> int:
    return ledger_progress(batch_id)["completed"]


def test_progress_is_complete_after_redis_restarts_empty_mid_batch(
    workers: object, beat: object, flush_redis: redis.Redis
) -> None:
    # Given a batch that has delivered part of its orders
    batch_id = _submit("progress-loss")
    wait_until(lambda: _delivered(batch_id) >= ORDERS // 5, timeout=120, interval=0.01)

    # When Redis loses everything while chunks are running, and nobody asks for
    # the status until the batch has finished
    flush_redis.flushdb()
    wait_for_final([batch_id], timeout=180)

    # Then the reported counts are the ledger's
    assert progress_mismatches([batch_id]) == {}


def test_progress_is_right_when_the_status_is_asked_first_after_the_loss(
    workers: object, beat: object, flush_redis: redis.Redis
) -> None:
    from tasks.status import batch_status

    batch_id = _submit("progress-asked")
    wait_until(lambda: _delivered(batch_id) >= ORDERS // 5, timeout=120, interval=0.01)

    flush_redis.flushdb()
    batch_status(batch_id)  # rebuilds the hash from the ledger while chunks still run
    wait_for_final([batch_id], timeout=180)

    assert progress_mismatches([batch_id]) == {}
