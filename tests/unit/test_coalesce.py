"""``tasks.coalesce``: one run at a time per process, and no request left unserved."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from tasks.coalesce import Coalesced


class _Counter:
    """A run that counts itself and can be held open or call back while it runs."""

    def __init__(self) -> None:
        self.runs = 0
        self.during: Callable[[int], object] = lambda _run: None

    def __call__(self) -> int:
        self.runs += 1
        self.during(self.runs)
        return 10


def _in_other_thread(call: Callable[[], int]) -> int:
    answers: list[int] = []
    thread = threading.Thread(target=lambda: answers.append(call()))
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive()
    return answers[0]


def test_a_lone_call_runs_once_and_returns_what_it_sent() -> None:
    run = _Counter()
    coalesced = Coalesced(run)

    assert coalesced() == 10
    assert run.runs == 1


def test_calls_during_a_run_return_at_once_and_are_served_by_one_more_run() -> None:
    run = _Counter()
    coalesced = Coalesced(run)
    others: list[int] = []
    # While the first run is under way, three other threads ask.
    run.during = lambda n: others.extend(_in_other_thread(coalesced) for _ in range(3) if n == 1)

    assert coalesced() == 20  # its own run and one more for the three
    assert others == [0, 0, 0]
    assert run.runs == 2


def test_a_request_after_the_last_look_and_before_the_release_is_served() -> None:
    run = _Counter()
    coalesced = Coalesced(run)
    turn = coalesced._turn
    asked: list[int] = []

    class _ReleaseLate:
        """The real turn, with another thread asking just before its first release."""

        def acquire(self, blocking: bool = True) -> bool:
            return turn.acquire(blocking)

        def release(self) -> None:
            if not asked:
                asked.append(_in_other_thread(coalesced))  # the turn is still held: 0
            turn.release()

    coalesced._turn = _ReleaseLate()  # type: ignore[assignment]

    assert coalesced() == 20
    assert asked == [0]
    assert run.runs == 2


def test_one_caller_runs_at_most_its_rounds_and_the_next_call_serves_the_rest() -> None:
    run = _Counter()
    coalesced = Coalesced(run, most_rounds=3)

    # Every run is asked for again while it runs: the caller must stop after three.
    def ask_again(_run: int) -> None:
        assert _in_other_thread(coalesced) == 0

    run.during = ask_again

    assert coalesced() == 30
    assert run.runs == 3
    run.during = lambda _n: None
    assert coalesced() == 10  # the request left pending, then this one: one run
    assert run.runs == 4


def test_an_error_reaches_the_caller_and_the_turn_is_free_again() -> None:
    def fail() -> int:
        raise ConnectionError("redis is down")

    coalesced = Coalesced(fail)

    with pytest.raises(ConnectionError):
        coalesced()
    assert coalesced._turn.acquire(blocking=False)


def test_concurrent_callers_never_run_two_at_once() -> None:
    running, most = 0, 0
    guard = threading.Lock()

    def run() -> int:
        nonlocal running, most
        with guard:
            running += 1
            most = max(most, running)
        threading.Event().wait(0.001)
        with guard:
            running -= 1
        return 1

    coalesced = Coalesced(run, most_rounds=1_000_000)  # no caller leaves a request behind
    threads = [threading.Thread(target=lambda: [coalesced() for _ in range(50)]) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert most == 1
    assert not coalesced._pending()  # every request was served
