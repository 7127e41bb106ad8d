"""The bench's per-tenth profile of a run: slices, the middle rate, CPU per process group."""

from __future__ import annotations

import os

from bench.progress_sampler import Mark, ProcessGroups, middle_rate, slices


def _marks(done_at: list[tuple[float, int]]) -> list[Mark]:
    return [Mark(at, done, {"workers": at * 0.5, "machine": at * 2}) for at, done in done_at]


def test_each_pair_of_marks_is_a_slice_with_its_rate_and_cores() -> None:
    parts = slices(_marks([(0.0, 0), (4.0, 100), (5.0, 200)]))
    assert [p["orders"] for p in parts] == [100, 100]
    assert [p["items_per_s"] for p in parts] == [25.0, 100.0]
    assert parts[0]["cores"] == {"workers": 0.5, "machine": 2.0}


def test_the_middle_rate_leaves_out_the_first_and_last_slice() -> None:
    # Given a slow fill (10 s for the first tenth) and a slow drain (10 s for the last)
    marks = [(0.0, 0), (10.0, 100)] + [(10.0 + n, 100 + 100 * n) for n in range(1, 9)]
    marks.append((28.0, 1000))
    parts = slices(_marks(marks))
    # Then the total rate is 1000 / 28 s, the middle one 800 orders in 8 s.
    assert middle_rate(parts) == 100.0
    assert middle_rate(parts[:2]) is None


def test_a_group_counts_cpu_used_after_its_first_reading() -> None:
    groups = ProcessGroups(roots={"bench": [os.getpid()]}, alone=frozenset({"bench"}))
    first = groups.cpu()
    assert first["bench"] == 0.0  # the baseline
    before = os.times()
    while os.times().user + os.times().system - before.user - before.system < 0.05:
        sum(range(10_000))
    assert groups.cpu()["bench"] >= 0.04
    assert groups.members_seen["bench"] == {os.getpid()}
