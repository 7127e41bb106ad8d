"""The writer, publisher and rate gate of a process are built once, however many threads ask."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tasks import handlers


@pytest.fixture()
def fresh_builders() -> Iterator[None]:
    """No writer, publisher or rate gate built yet in this process (and none left after)."""
    for cached in (handlers._writer, handlers._publisher, handlers._rate_gate):
        cached.cache_clear()
    yield
    for cached in (handlers._writer, handlers._publisher, handlers._rate_gate):
        cached.cache_clear()


def test_threads_asking_at_once_share_one_writer(
    fresh_builders: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds: list[object] = []

    def slow_make_writer(*_: Any) -> object:
        time.sleep(0.05)  # as an httpx client's TLS context takes, so the threads overlap
        builds.append(object())
        return builds[-1]

    monkeypatch.setattr(handlers, "make_writer", slow_make_writer)
    start = threading.Barrier(16)
    got: list[object] = []

    def ask() -> None:
        start.wait()
        got.append(handlers.writer())

    threads = [threading.Thread(target=ask) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(builds) == 1
    assert len(got) == 16 and all(writer is builds[0] for writer in got)
