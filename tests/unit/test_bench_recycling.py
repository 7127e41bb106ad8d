"""bench.recycling's summary: each task's wait from the worker's receipt to its start."""

from __future__ import annotations

import fakeredis

from bench.recycling import RECEIVED_KEY, STARTED_KEY, _summary


def _stamps(received: dict[str, float], started: dict[str, str]) -> fakeredis.FakeRedis:
    client = fakeredis.FakeRedis(decode_responses=True)
    for task, at in received.items():
        client.hset(RECEIVED_KEY, task, at)
    for task, stamp in started.items():
        client.hset(STARTED_KEY, task, stamp)
    return client


def test_waits_are_start_minus_receipt_and_processes_are_counted() -> None:
    received = {f"t{n:02}": 100.0 + n for n in range(20)}
    # t19 waited 1.5 s for a replacement process; the others 5 ms, in two processes.
    started = {
        task: f"{at + (1.5 if task == 't19' else 0.005)}:{7 if task < 't10' else 8}"
        for task, at in received.items()
    }
    row = _summary(_stamps(received, started), list(received), every=5, wall=2.0)
    assert row["started"] == 20
    assert row["processes"] == 2
    assert row["wait_p50_ms"] == 5.0
    assert row["wait_max_ms"] == 1500.0
    assert row["waits_over_100ms"] == 1


def test_a_task_that_never_started_is_counted_as_missing_not_as_a_wait() -> None:
    client = _stamps({"a": 1.0, "b": 1.0}, {"a": "1.01:9"})
    row = _summary(client, ["a", "b"], every=0, wall=1.0)
    assert (row["tasks"], row["started"], row["wait_max_ms"]) == (2, 1, 10.0)
