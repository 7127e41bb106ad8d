"""A progress hash is complete or rebuilt: record_chunk never starts a partial one unnoticed."""

from __future__ import annotations

import fakeredis
import pytest

from metrics.progress import (
    ChunkProgress,
    forget_progress,
    init_progress,
    is_complete,
    read_progress,
    rebuild_progress,
    record_chunk,
)
from pipeline.settings import get_settings


@pytest.fixture(autouse=True)
def default_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_PREFIX_BATCH", raising=False)
    get_settings.cache_clear()


@pytest.fixture()
def client() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)


def test_a_chunk_on_a_live_hash_is_counted(client: fakeredis.FakeRedis) -> None:
    init_progress(client, "b", 10)

    assert record_chunk(client, "b", ChunkProgress("delivery", 3, 0, delivered=3))
    assert read_progress(client, "b")["completed"] == "3"


def test_a_chunk_on_a_lost_hash_asks_for_a_rebuild(client: fakeredis.FakeRedis) -> None:
    # Given a hash Redis lost (restart, TTL)
    # When a chunk records its outcome
    counted = record_chunk(client, "b", ChunkProgress("delivery", 3, 0, delivered=3))

    # Then it says the counters alone are wrong, and what it left is not complete
    assert not counted
    assert not is_complete(read_progress(client, "b"))


def test_a_chunk_after_the_final_rebuild_asks_for_another(client: fakeredis.FakeRedis) -> None:
    rebuild_progress(
        client, "b", total=3, state_counts={"DELIVERED": 3}, status="COMPLETED",
        started_at=1.0, finished_at=2.0,
    )  # fmt: skip

    assert not record_chunk(client, "b", ChunkProgress("delivery", 1, 0, delivered=1))


def test_a_rebuild_of_a_finalized_batch_is_final(client: fakeredis.FakeRedis) -> None:
    fields = rebuild_progress(
        client, "b", total=3, state_counts={"DELIVERED": 2, "FAILED": 1}, status="PARTIAL",
        started_at=1.0, finished_at=2.0,
    )  # fmt: skip

    assert fields["final"] == "1" and fields["finished_at"] == "2.0"
    assert is_complete(read_progress(client, "b"))


def test_a_rebuild_of_a_running_batch_is_not_final(client: fakeredis.FakeRedis) -> None:
    fields = rebuild_progress(
        client, "b", total=3, state_counts={"DELIVERED": 1}, status="RUNNING", started_at=1.0
    )

    assert "final" not in fields
    assert record_chunk(client, "b", ChunkProgress("delivery", 1, 0, delivered=1))
    assert read_progress(client, "b")["completed"] == "2"


def test_a_forgotten_hash_starts_again_from_zero(client: fakeredis.FakeRedis) -> None:
    # Given a finished batch's hash
    init_progress(client, "b", 3)
    record_chunk(client, "b", ChunkProgress("delivery", 3, 0, delivered=3))
    # When the batch is deleted and the same id is submitted again
    forget_progress(client, "b")
    assert read_progress(client, "b") == {}
    init_progress(client, "b", 5)
    # Then the new hash counts the new batch only
    assert read_progress(client, "b")["total"] == "5"
    assert (
        "completed" not in read_progress(client, "b")
        or read_progress(client, "b")["completed"] == "0"
    )
