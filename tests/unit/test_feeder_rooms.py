"""The feeder's room per queue: a lane's CPU and I/O queues each have their own window."""

from __future__ import annotations

import fakeredis
import pytest

from celery_app import IO_LANES, LANES
from pipeline.settings import get_settings
from tasks.feeder import _largest_chunk, _rooms


@pytest.fixture()
def client() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(server=fakeredis.FakeServer())


def test_a_full_cpu_queue_leaves_the_io_queue_its_whole_window(client) -> None:
    window = get_settings().batch_lane_window
    client.rpush(LANES["normal"], *["qc-chunk"] * window)

    assert _rooms(client, "normal") == {False: 0, True: window}


def test_each_queue_counts_only_its_own_messages(client) -> None:
    window = get_settings().batch_lane_window
    client.rpush(IO_LANES["low"], *["writing-chunk"] * 3)
    client.rpush(LANES["low"], "preflight-chunk")
    client.rpush(IO_LANES["high"], "delivery-chunk")  # another lane's

    assert _rooms(client, "low") == {False: window - 1, True: window - 3}


def test_each_kind_of_queue_is_read_for_in_its_own_stages_largest_chunks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given CPU-bound stages cut in chunks of 40 and 30, I/O-bound ones in 5 and 7
    for stage, size in {"PREFLIGHT": 40, "QC": 30, "WRITING": 5, "DELIVERY": 7}.items():
        monkeypatch.setenv(f"BATCH_CHUNK_{stage}_OPTIMAL", str(size))
        monkeypatch.setenv(f"BATCH_CHUNK_{stage}_MAX", str(size))
    get_settings.cache_clear()
    try:
        # Then a free place in the CPU queue is worth 40 orders, one in the I/O queue 7
        assert _largest_chunk(False) == 40
        assert _largest_chunk(True) == 7
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
