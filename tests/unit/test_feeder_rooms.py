"""The feeder's room per queue: a lane's CPU and I/O queues each have their own window."""

from __future__ import annotations

import fakeredis
import pytest

from celery_app import IO_LANES, LANES
from pipeline.settings import get_settings
from tasks.feeder import _rooms


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
