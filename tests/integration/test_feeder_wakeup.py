"""The feeder's lane lock loses no request to feed (real Redis: the lock is Lua).

A feeder that finds the lane's lock taken sets ``feeder_again`` and leaves; the
holder must serve that request even when it came after the holder's last look at
the flag and before its release, or the orders wait for the lane's next trigger.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from redis.lock import Lock

from metrics.keys import feeder_again_key, feeder_lock_key
from tasks import feeder

pytestmark = pytest.mark.integration

#: Flushed before and after; the lock and flag keys only (the pool read is replaced).
WAKEUP_REDIS_DB = 13


@pytest.fixture()
def client(
    isolated_redis: Callable[[int], str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[redis.Redis]:
    real = redis.Redis.from_url(isolated_redis(WAKEUP_REDIS_DB))
    monkeypatch.setattr(feeder, "redis_client", lambda: real)
    monkeypatch.setattr(feeder, "_rooms", lambda _client, _lane: {False: 16, True: 16})
    monkeypatch.setattr(feeder, "_has_pooled", lambda _lane: True)
    try:
        yield real
    finally:
        real.close()


def _count_feeds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replace the pool read with a recorder: each round appends who fed."""
    feeds: list[str] = []

    def record(_client: object, lane: str, _rooms: object) -> int:
        feeds.append(lane)
        return 1

    monkeypatch.setattr(feeder, "_feed", record)
    return feeds


def _held_lock(client: redis.Redis, lane: str) -> Lock:
    """The lane's feeder lock, taken by another process (this test)."""
    holder: Lock = client.lock(feeder_lock_key(lane), timeout=10, blocking=False)
    assert holder.acquire()
    return holder


def _before_the_first_release(monkeypatch: pytest.MonkeyPatch, action: Callable[[], None]) -> None:
    """Run ``action`` once, inside the holder's last moment: after its last look, lock held."""
    original = Lock.release
    pending = [action]

    def release(self: Lock) -> None:
        if pending:
            pending.pop()()
        original(self)

    monkeypatch.setattr(Lock, "release", release)


def test_a_request_made_after_the_holders_last_look_is_fed_after_its_release(
    client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    feeds = _count_feeds(monkeypatch)
    answers: list[int] = []
    # Given a second feeder arriving while the first still holds the lock, past its last look
    _before_the_first_release(monkeypatch, lambda: answers.append(feeder.feed("normal")))

    # When the first feeds the lane
    sent = feeder.feed("normal")

    # Then the second left at once (the lock was taken) and the first fed once more for it
    assert answers == [0]
    assert sent == 2 and feeds == ["normal", "normal"]
    assert client.get(feeder_again_key("normal")) is None


def test_a_feeder_that_finds_the_lock_taken_and_then_free_feeds_itself(
    client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    feeds = _count_feeds(monkeypatch)
    holder = _held_lock(client, "low")
    # Given the holder releasing right after the second feeder's first try
    original = Lock.acquire
    tries: list[int] = []

    def acquire(self: Lock, *args: Any, **kwargs: Any) -> bool:
        taken = bool(original(self, *args, **kwargs))
        tries.append(int(taken))
        if len(tries) == 1:
            holder.release()
        return taken

    monkeypatch.setattr(Lock, "acquire", acquire)

    # When it feeds, Then its second try takes the free lock and it feeds, request consumed
    assert feeder.feed("low") == 1
    assert tries[:2] == [0, 1] and feeds == ["low"]
    assert client.get(feeder_again_key("low")) is None


def test_a_feeder_that_finds_the_lock_held_leaves_its_request_for_the_holder(
    client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    feeds = _count_feeds(monkeypatch)
    _held_lock(client, "high")

    assert feeder.feed("high") == 0
    assert feeds == [] and client.get(feeder_again_key("high")) == b"1"


def test_a_feeder_leaves_an_empty_lane_without_its_lock(
    client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    feeds = _count_feeds(monkeypatch)
    # Given nothing pooled in the lane, and its lock held by a (slow) feeder elsewhere
    monkeypatch.setattr(feeder, "_has_pooled", lambda _lane: False)
    holder = _held_lock(client, "high")

    # When a feeder comes by, Then it leaves at once: no feed, no request for the holder
    assert feeder.feed("high") == 0
    assert feeds == [] and client.get(feeder_again_key("high")) is None

    # And with the lock free it does not take it either
    holder.release()
    assert feeder.feed("high") == 0
    assert feeds == [] and client.get(feeder_lock_key("high")) is None
