"""Redis keys and the progress hash, against an in-memory fakeredis server of each test's own."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime

import fakeredis
import pytest

from metrics.keys import batch_error_bucket_key, error_bucket_key, progress_key
from metrics.progress import (
    ChunkProgress,
    init_progress,
    mark_finished,
    read_progress,
    rebuild_progress,
    record_chunk,
)
from pipeline.settings import get_settings

DAY = 86_400


@pytest.fixture(autouse=True)
def default_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Default prefixes and TTL unless a test sets its own; the cache is emptied around it."""
    for name in list(os.environ):
        if name.upper().startswith(("REDIS_PREFIX_", "BATCH_")):
            monkeypatch.delenv(name)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture()
def client() -> fakeredis.FakeRedis:
    """A Redis client on a fresh in-memory server that no other test shares."""
    return fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)


def use_env(monkeypatch: pytest.MonkeyPatch, **variables: str) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()


# --- keys -----------------------------------------------------------------------------


def test_progress_key_uses_the_default_batch_prefix() -> None:
    assert progress_key("batch-1") == "batch:progress:batch-1"


def test_error_bucket_key_uses_the_default_metrics_prefix_and_the_utc_hour() -> None:
    hour = datetime(2026, 3, 4, 5, 59, 59, tzinfo=UTC)

    assert error_bucket_key(hour) == "metrics:errors:2026030405"


def test_keys_honour_the_configured_prefixes(monkeypatch: pytest.MonkeyPatch) -> None:
    use_env(monkeypatch, REDIS_PREFIX_BATCH="tenant-a:batch:", REDIS_PREFIX_METRICS="tenant-a:m:")

    assert progress_key("b-9") == "tenant-a:batch:progress:b-9"
    assert (
        error_bucket_key(datetime(2026, 12, 31, 23, tzinfo=UTC)) == "tenant-a:m:errors:2026123123"
    )


# --- init_progress --------------------------------------------------------------------


def test_init_progress_sets_total_start_time_and_running_status(
    client: fakeredis.FakeRedis,
) -> None:
    init_progress(client, "batch-1", 120)

    progress = read_progress(client, "batch-1")
    assert progress["total"] == "120"
    assert progress["status"] == "running"
    assert float(progress["started_at"]) > 0
    assert progress["updated_at"] == progress["started_at"]


def test_init_progress_expires_after_the_metrics_ttl(client: fakeredis.FakeRedis) -> None:
    init_progress(client, "batch-1", 10)

    assert 7 * DAY - 5 <= client.ttl("batch:progress:batch-1") <= 7 * DAY


def test_init_progress_honours_batch_metrics_ttl_days(
    client: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_env(monkeypatch, BATCH_METRICS_TTL_DAYS="2")

    init_progress(client, "batch-1", 10)

    assert 2 * DAY - 5 <= client.ttl("batch:progress:batch-1") <= 2 * DAY


def test_init_progress_writes_under_the_configured_prefix(
    client: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_env(monkeypatch, REDIS_PREFIX_BATCH="other:")

    init_progress(client, "batch-1", 10)

    assert client.keys("*") == ["other:progress:batch-1"]


def test_init_progress_does_not_overwrite_an_existing_hash(client: fakeredis.FakeRedis) -> None:
    # Given a batch whose progress already moved on
    init_progress(client, "batch-1", 10)
    record_chunk(client, "batch-1", ChunkProgress("preflight", done=4, failed=1))
    client.hset("batch:progress:batch-1", mapping={"started_at": "1.0", "status": "paused"})
    before = read_progress(client, "batch-1")

    # When the submission is replayed with another total
    init_progress(client, "batch-1", 999)

    # Then nothing that was there changes
    assert read_progress(client, "batch-1") == before


def test_batches_do_not_share_progress(client: fakeredis.FakeRedis) -> None:
    init_progress(client, "batch-1", 10)
    init_progress(client, "batch-2", 20)

    assert read_progress(client, "batch-1")["total"] == "10"
    assert read_progress(client, "batch-2")["total"] == "20"


def test_read_progress_of_a_lost_hash_is_empty(client: fakeredis.FakeRedis) -> None:
    assert read_progress(client, "never-seen") == {}


# --- record_chunk ---------------------------------------------------------------------


def test_record_chunk_adds_to_the_stage_and_batch_counters(client: fakeredis.FakeRedis) -> None:
    init_progress(client, "batch-1", 50)

    record_chunk(client, "batch-1", ChunkProgress("writing", done=5, failed=1))
    record_chunk(client, "batch-1", ChunkProgress("writing", done=4, failed=2))
    record_chunk(client, "batch-1", ChunkProgress("qc", done=3, failed=0))

    progress = read_progress(client, "batch-1")
    assert progress["writing_done"] == "9"
    assert progress["writing_failed"] == "3"
    assert progress["qc_done"] == "3"
    assert progress["qc_failed"] == "0"
    assert progress["failed"] == "3"
    assert progress["completed"] == "0"


def test_a_fused_stage_counts_under_its_own_name_in_the_same_round_trip(
    client: fakeredis.FakeRedis,
) -> None:
    # Given a writing chunk of 5 that ran QC itself: 3 approved, 1 rewrite, 1 rejected
    init_progress(client, "batch-1", 50)
    writing = ChunkProgress("writing", done=5, failed=0)
    qc = ChunkProgress("qc", done=3, failed=1, errors={"QualityRejected": 1}, rewrites=1)

    counted = record_chunk(client, "batch-1", writing, qc)

    progress = read_progress(client, "batch-1")
    assert counted is True
    assert (progress["writing_done"], progress["writing_failed"]) == ("5", "0")
    assert (progress["qc_done"], progress["qc_failed"]) == ("3", "1")
    assert (progress["failed"], progress["rewrites"]) == ("1", "1")
    assert client.hgetall(batch_error_bucket_key("batch-1")) == {"QualityRejected": "1"}


def test_a_fused_chunk_on_a_lost_hash_asks_for_one_rebuild(client: fakeredis.FakeRedis) -> None:
    counted = record_chunk(
        client, "lost", ChunkProgress("writing", done=1, failed=0), ChunkProgress("qc", 1, 0)
    )

    assert counted is False


def test_record_chunk_counts_delivered_items_as_completed(client: fakeredis.FakeRedis) -> None:
    init_progress(client, "batch-1", 50)

    record_chunk(client, "batch-1", ChunkProgress("delivery", done=7, failed=1, delivered=7))
    record_chunk(client, "batch-1", ChunkProgress("delivery", done=2, failed=0, delivered=2))

    progress = read_progress(client, "batch-1")
    assert progress["delivery_done"] == "9"
    assert progress["completed"] == "9"
    assert progress["failed"] == "1"


def test_record_chunk_moves_updated_at_and_refreshes_the_ttl(
    client: fakeredis.FakeRedis,
) -> None:
    init_progress(client, "batch-1", 50)
    client.hset("batch:progress:batch-1", "updated_at", "1.0")
    client.expire("batch:progress:batch-1", 60)

    record_chunk(client, "batch-1", ChunkProgress("preflight", done=1, failed=0))

    assert float(read_progress(client, "batch-1")["updated_at"]) > 1.0
    assert client.ttl("batch:progress:batch-1") > 7 * DAY - 5


def test_mark_finished_lower_cases_the_status_and_records_the_end(
    client: fakeredis.FakeRedis,
) -> None:
    init_progress(client, "batch-1", 1)

    mark_finished(client, "batch-1", "COMPLETED")

    progress = read_progress(client, "batch-1")
    assert progress["status"] == "completed"
    assert float(progress["finished_at"]) >= float(progress["started_at"])


# --- rebuild_progress -----------------------------------------------------------------

STATE_COUNTS = {
    "PENDING": 1,
    "PREFLIGHT": 2,
    "WRITING": 3,
    "QC": 4,
    "APPROVED": 5,
    "DELIVERED": 6,
    "FAILED": 7,
    "CANCELLED": 8,
}


def test_rebuild_derives_each_stage_done_count_from_where_items_are_now(
    client: fakeredis.FakeRedis,
) -> None:
    fields = rebuild_progress(
        client, "batch-1", total=36, state_counts=STATE_COUNTS, status="RUNNING", started_at=5.0
    )

    # An item in WRITING has done preflight; in QC, preflight and writing; APPROVED has
    # passed QC; only DELIVERED has done delivery.
    assert fields["preflight_done"] == str(3 + 4 + 5 + 6)
    assert fields["writing_done"] == str(4 + 5 + 6)
    assert fields["qc_done"] == str(5 + 6)
    assert fields["delivery_done"] == "6"
    assert fields["total"] == "36"
    assert fields["completed"] == "6"
    assert fields["failed"] == "7"
    assert fields["cancelled"] == "8"
    assert fields["status"] == "running"
    assert float(fields["started_at"]) == 5.0


@pytest.mark.parametrize(
    ("state", "done_stages"),
    [
        ("PENDING", []),
        ("PREFLIGHT", []),
        ("WRITING", ["preflight"]),
        ("QC", ["preflight", "writing"]),
        ("APPROVED", ["preflight", "writing", "qc"]),
        ("DELIVERED", ["preflight", "writing", "qc", "delivery"]),
        ("CANCELLED", []),
    ],
)
def test_one_item_counts_as_done_for_exactly_the_stages_it_has_passed(
    client: fakeredis.FakeRedis, state: str, done_stages: list[str]
) -> None:
    fields = rebuild_progress(
        client, "batch-1", total=1, state_counts={state: 1}, status="running", started_at=1.0
    )

    for stage in ("preflight", "writing", "qc", "delivery"):
        assert fields[f"{stage}_done"] == ("1" if stage in done_stages else "0")


def test_rebuild_stores_what_it_returns_and_replaces_stale_fields(
    client: fakeredis.FakeRedis,
) -> None:
    # Given a hash with counters that drifted and fields that no longer apply
    key = progress_key("batch-1")
    client.hset(key, mapping={"total": "1", "qc_done": "999", "qc_failed": "5", "stray": "x"})

    # When it is rebuilt from the ledger
    fields = rebuild_progress(
        client, "batch-1", total=3, state_counts={"QC": 3}, status="running", started_at=2.0
    )

    # Then the hash holds exactly the rebuilt fields
    assert read_progress(client, "batch-1") == fields
    assert "stray" not in fields
    assert fields["qc_done"] == "0" and fields["qc_failed"] == "0"
    assert fields["writing_done"] == "3"


def test_rebuild_sets_the_metrics_ttl(client: fakeredis.FakeRedis) -> None:
    rebuild_progress(client, "batch-1", total=1, state_counts={}, status="running", started_at=1.0)

    assert 7 * DAY - 5 <= client.ttl(progress_key("batch-1")) <= 7 * DAY


def test_rebuild_of_a_batch_with_no_items_counts_zero_everywhere(
    client: fakeredis.FakeRedis,
) -> None:
    fields = rebuild_progress(
        client, "batch-1", total=0, state_counts={}, status="COMPLETED", started_at=1.0
    )

    assert {name: fields[name] for name in ("completed", "failed", "cancelled")} == {
        "completed": "0",
        "failed": "0",
        "cancelled": "0",
    }
    assert fields["status"] == "completed"


def test_failed_orders_count_in_the_hours_bucket_and_in_the_batchs_own(
    client: fakeredis.FakeRedis,
) -> None:
    init_progress(client, "batch-1", total=10)

    record_chunk(client, "batch-1", ChunkProgress("qc", 2, 3, errors={"QCRejected": 3}))
    record_chunk(client, "batch-1", ChunkProgress("delivery", 0, 1, errors={"PublishError": 1}))

    hour = client.hgetall(error_bucket_key(datetime.now(UTC)))
    assert client.hgetall(batch_error_bucket_key("batch-1")) == {
        "QCRejected": "3",
        "PublishError": "1",
    }
    assert hour == {"QCRejected": "3", "PublishError": "1"}
    assert batch_error_bucket_key("batch-1") == "metrics:batch-errors:batch-1"
    assert client.ttl(batch_error_bucket_key("batch-1")) > 0
