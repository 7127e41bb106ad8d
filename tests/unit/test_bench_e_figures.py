"""Scenario E's memory and CPU figures: PSS per process, the busiest process's share."""

from __future__ import annotations

import os

from bench.realistic import _busiest_percent, _pss_bytes


def test_pss_of_this_process_is_read_and_at_most_its_rss() -> None:
    pss = _pss_bytes(os.getpid())
    with open(f"/proc/{os.getpid()}/status", encoding="ascii") as status:
        rss_kb = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))

    assert 0 < pss <= rss_kb * 1024 * 1.05  # sampled a moment apart


def test_an_unreadable_process_has_no_pss() -> None:
    assert _pss_bytes(2**22 + 12345) == 0  # above the kernel's largest pid


def test_the_busiest_process_counts_only_its_time_in_the_run() -> None:
    before = {10: 5.0, 11: 1.0}
    after = {10: 50.0, 11: 30.0, 12: 20.0}  # 12 started during the run

    # 45 s of CPU in 50 s of wall time: 90 % of one core (11: 29 s, 12: 20 s)
    assert _busiest_percent(before, after, 50.0) == 90.0


def test_no_process_or_no_time_gives_zero() -> None:
    assert _busiest_percent({}, {}, 10.0) == 0.0
    assert _busiest_percent({1: 0.0}, {1: 3.0}, 0.0) == 0.0
