"""The feeder's and the sweeper's Redis locks: a holder never deletes its successor's lock.

Both locks expire so a dead holder cannot block the next one. A holder that is
merely slow may therefore find, when it is done, that its lock expired and that
a successor holds the key now: releasing must then leave the successor's lock
alone, atomically (a GET followed by a DEL can delete a lock taken in between).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.lock import Lock

from metrics.keys import feeder_lock_key, sweeper_lock_key
from metrics.redis_client import redis_client

pytestmark = pytest.mark.integration

SUCCESSOR = "successor-token"


class SuccessorTakesOverDuringRelease:
    """A Redis client on which, once armed, the lock at `key` expires and a successor
    takes it in the middle of the holder's release.

    A GET-then-DEL release loses the race when the take-over falls between its GET
    and its DEL; a release in one script call sees either the holder's own token
    or the successor's, and only ever deletes its own.
    """

    def __init__(self, client: redis.Redis, key: str) -> None:
        self._client = client
        self._key = key
        self.armed = False

    def lock(self, name: str, **options: Any) -> Lock:
        return Lock(self, name, **options)

    def get(self, name: str) -> Any:
        value = self._client.get(name)
        self._take_over()  # between the holder's GET and whatever it does next
        return value

    def evalsha(self, *args: Any) -> Any:
        self._take_over()  # a script is atomic: the take-over can only come before it
        return self._client.evalsha(*args)

    def _take_over(self) -> None:
        if self.armed:
            self.armed = False
            self._client.set(self._key, SUCCESSOR, px=60_000)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


@pytest.fixture
def client(service_env: dict[str, str]) -> Iterator[redis.Redis]:
    real = redis_client()
    yield real
    real.delete(sweeper_lock_key(), feeder_lock_key("low"))


def test_feeder_release_leaves_a_successors_lock_alone(
    client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tasks.feeder as feeder

    key = feeder_lock_key("low")
    racing = SuccessorTakesOverDuringRelease(client, key)

    def feed_then_arm(*_: object) -> int:
        racing.armed = True
        return 0

    monkeypatch.setattr(feeder, "redis_client", lambda: racing)
    monkeypatch.setattr(feeder, "_has_pooled", lambda _lane: True)  # work waits: it locks
    monkeypatch.setattr(feeder, "_feed", feed_then_arm)

    feeder.feed("low")

    assert client.get(key) == SUCCESSOR


def test_feeder_whose_lock_expired_while_feeding_leaves_the_successors_lock(
    client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tasks.feeder as feeder

    key = feeder_lock_key("low")

    def slow_feed(*_: object) -> int:
        # The lock ran out during a long feed and another process took it.
        client.set(key, SUCCESSOR, px=60_000)
        return 0

    monkeypatch.setattr(feeder, "_has_pooled", lambda _lane: True)  # work waits: it locks
    monkeypatch.setattr(feeder, "_feed", slow_feed)

    feeder.feed("low")

    assert client.get(key) == SUCCESSOR


def test_sweep_whose_lock_expired_leaves_the_next_sweeps_lock(
    client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    import recovery.sweeper as sweeper

    def slow_sweep(*_: object) -> sweeper.SweepReport:
        # The sweep outlived its lock; the next sweep took it.
        client.set(sweeper_lock_key(), SUCCESSOR, px=60_000)
        return sweeper.SweepReport()

    monkeypatch.setattr(sweeper, "_sweep", slow_sweep)

    sweeper.sweep()

    assert client.get(sweeper_lock_key()) == SUCCESSOR


def test_a_second_sweep_is_skipped_while_the_first_holds_the_lock(
    client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    import recovery.sweeper as sweeper

    inner: list[sweeper.SweepReport] = []

    def sweep_that_meets_another(*_: object) -> sweeper.SweepReport:
        inner.append(sweeper.sweep())
        return sweeper.SweepReport()

    monkeypatch.setattr(sweeper, "_sweep", sweep_that_meets_another)

    assert not sweeper.sweep().skipped
    assert [report.skipped for report in inner] == [True]
    assert client.get(sweeper_lock_key()) is None  # released when done
