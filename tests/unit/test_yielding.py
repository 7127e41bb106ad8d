"""Which queues a running chunk watches, and when it sees higher-lane work waiting."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import fakeredis
import pytest
import redis

import tasks.yielding as yielding
from celery_app import IO_LANES, LANES
from tasks.yielding import HigherWorkWatch, queues_above

CPU_WORKER = {"batch.maintenance", "batch.recovery", *LANES.values()}


@pytest.mark.parametrize(
    ("lane", "consumed", "expected"),
    [
        ("high", None, []),
        ("normal", None, ["batch.high", "batch.high.io"]),
        ("low", None, ["batch.high", "batch.high.io", "batch.normal", "batch.normal.io"]),
        # the prefork worker of `batchline worker` polls no I/O queue: it watches none
        ("low", CPU_WORKER, ["batch.high", "batch.normal"]),
        ("normal", CPU_WORKER, ["batch.high"]),
        ("low", set(IO_LANES.values()), ["batch.high.io", "batch.normal.io"]),
        ("unknown", None, []),
    ],
)
def test_a_chunk_watches_the_higher_lanes_its_worker_polls(lane, consumed, expected) -> None:
    assert queues_above(lane, consumed) == expected


@pytest.fixture()
def client(monkeypatch: pytest.MonkeyPatch) -> fakeredis.FakeRedis:
    monkeypatch.setattr(yielding, "_consumed_queues", lambda: CPU_WORKER)
    monkeypatch.setattr(yielding, "CHECK_INTERVAL_S", 0.0)
    return fakeredis.FakeRedis(server=fakeredis.FakeServer())


def test_a_low_chunk_sees_a_high_message_waiting(client) -> None:
    client.rpush(LANES["high"], "preflight-chunk")

    assert HigherWorkWatch("low", client).waiting()


def test_a_chunk_ignores_its_own_lane_lower_lanes_and_queues_its_worker_skips(client) -> None:
    client.rpush(LANES["low"], "qc-chunk")
    client.rpush(LANES["normal"], "qc-chunk")
    client.rpush(IO_LANES["high"], "writing-chunk")  # the I/O worker takes it

    assert not HigherWorkWatch("normal", client).waiting()
    assert not HigherWorkWatch("high", client).waiting()


def test_queues_are_read_at_most_once_per_interval(client, monkeypatch) -> None:
    monkeypatch.setattr(yielding, "CHECK_INTERVAL_S", 3600.0)
    watch = HigherWorkWatch("low", client)
    client.rpush(LANES["high"], "preflight-chunk")

    assert not watch.waiting()  # the first look is due one interval after the start


def test_a_redis_error_lets_the_chunk_go_on(client, monkeypatch) -> None:
    def broken(*_args, **_kwargs):
        raise redis.ConnectionError("gone")

    monkeypatch.setattr(client, "pipeline", broken)

    assert not HigherWorkWatch("low", client).waiting()


def test_once_seen_higher_work_stays_seen_for_the_rest_of_the_chunk(client, monkeypatch) -> None:
    # Every item still waiting for a slot gives way, not only the one that looked.
    watch = HigherWorkWatch("low", client)
    client.rpush(LANES["high"], "preflight-chunk")
    assert watch.waiting()

    client.delete(LANES["high"])  # the other process took it meanwhile
    monkeypatch.setattr(yielding, "CHECK_INTERVAL_S", 3600.0)
    assert watch.waiting()


def test_threads_asking_at_once_share_one_look(client, monkeypatch) -> None:
    looks: list[int] = []

    def look(_self: HigherWorkWatch) -> bool:
        looks.append(1)
        return False

    monkeypatch.setattr(HigherWorkWatch, "_look", look)
    monkeypatch.setattr(yielding, "CHECK_INTERVAL_S", 3600.0)
    watch = HigherWorkWatch("low", client)
    watch._next_check = 0.0  # the first look is due now

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: watch.waiting(), range(32)))

    assert answers == [False] * 32
    assert looks == [1]
