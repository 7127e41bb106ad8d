"""poll_until: tries until success or the deadline, with growing pauses, never past it."""

from __future__ import annotations

from pipeline.polling import LONGEST_PAUSE_S, poll_until


class Failing:
    """An attempt that never succeeds, counting its tries."""

    def __init__(self) -> None:
        self.tries = 0

    def __call__(self) -> bool:
        self.tries += 1
        return False


class FakeTime:
    """A clock that only moves when slept on."""

    def __init__(self) -> None:
        self.now = 0.0
        self.pauses: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


def test_a_first_success_sleeps_not_at_all() -> None:
    fake = FakeTime()
    assert poll_until(lambda: True, 1.0, clock=fake.clock, sleep=fake.sleep)
    assert fake.pauses == []


def test_it_tries_again_until_the_attempt_succeeds() -> None:
    fake, answers = FakeTime(), iter([False, False, False, True])
    assert poll_until(lambda: next(answers), 1.0, clock=fake.clock, sleep=fake.sleep)
    assert fake.pauses == [0.02, 0.04, 0.08]


def test_it_gives_up_at_the_deadline_without_sleeping_past_it() -> None:
    fake, failing = FakeTime(), Failing()
    assert not poll_until(failing, 0.5, clock=fake.clock, sleep=fake.sleep)
    assert round(fake.now, 9) == 0.5
    assert max(fake.pauses) == LONGEST_PAUSE_S
    assert failing.tries == len(fake.pauses) + 1  # one last try at the deadline


def test_zero_seconds_tries_once() -> None:
    fake, failing = FakeTime(), Failing()
    assert not poll_until(failing, 0.0, clock=fake.clock, sleep=fake.sleep)
    assert failing.tries == 1 and fake.pauses == []


def test_after_a_try_of_its_own_the_caller_is_not_tried_again_at_once() -> None:
    fake, answers = FakeTime(), iter([False, True])
    assert poll_until(lambda: next(answers), 1.0, tried=True, clock=fake.clock, sleep=fake.sleep)
    assert fake.pauses == [0.02, 0.04]  # a pause before each try


def test_after_a_try_of_its_own_zero_seconds_tries_no_more() -> None:
    fake, failing = FakeTime(), Failing()
    assert not poll_until(failing, 0.0, tried=True, clock=fake.clock, sleep=fake.sleep)
    assert failing.tries == 0 and fake.pauses == []
