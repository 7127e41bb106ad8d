"""Calls in flight over time, from a log of ``(start, end)`` intervals (any one clock).

Pure functions: scenario E feeds them the mock writer's own log, the smoke test
re-checks the cap with them, and the report draws their series.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Interval = tuple[float, float]


@dataclass(frozen=True)
class InFlight:
    """How many calls were open at once over a window.

    Attributes:
        peak: the most calls open at the same instant.
        mean: the time-weighted mean over the window (0 for an empty window).
        window_s: the window's length in seconds.
    """

    peak: int
    mean: float
    window_s: float


def _events(intervals: Iterable[Interval]) -> list[tuple[float, int]]:
    """+1 at each start, -1 at each end; at equal times ends sort first.

    Ends first: a call that ends at the very instant another starts did not
    overlap it (a worker reusing its slot must not count twice).
    """
    events = [(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals]
    return sorted(events, key=lambda event: (event[0], event[1]))


def peak_in_flight(intervals: Iterable[Interval]) -> int:
    """The most intervals open at the same instant."""
    open_now = peak = 0
    for _, step in _events(intervals):
        open_now += step
        peak = max(peak, open_now)
    return peak


def in_flight(intervals: Sequence[Interval], window: Interval | None = None) -> InFlight:
    """Peak and time-weighted mean of open intervals within ``window``.

    Args:
        intervals: ``(start, end)`` pairs, ``end >= start``.
        window: ``(from, to)`` to average over; default from the first start to
            the last end.
    """
    if not intervals:
        return InFlight(peak=0, mean=0.0, window_s=0.0)
    low, high = window or (min(s for s, _ in intervals), max(e for _, e in intervals))
    span = max(high - low, 0.0)
    busy = sum(max(0.0, min(end, high) - max(start, low)) for start, end in intervals)
    return InFlight(
        peak=peak_in_flight(intervals), mean=busy / span if span else 0.0, window_s=span
    )


def series(intervals: Sequence[Interval], origin: float, bin_s: float, bins: int) -> list[float]:
    """Mean calls in flight per bin of ``bin_s`` seconds from ``origin``, ``bins`` bins.

    Each interval adds its overlap with a bin, divided by the bin's length, so a
    bin's value is the time-weighted mean of that stretch (the chart's line).

    Raises:
        ValueError: ``bin_s`` is not positive.
    """
    if bin_s <= 0:
        raise ValueError(f"bin_s must be positive, got {bin_s}")
    busy = [0.0] * bins
    for start, end in intervals:
        first = max(0, int((start - origin) // bin_s))
        last = min(bins - 1, int((end - origin) // bin_s))
        for index in range(first, last + 1):
            low = origin + index * bin_s
            busy[index] += max(0.0, min(end, low + bin_s) - max(start, low))
    return [round(value / bin_s, 3) for value in busy]


def bin_width(seconds: float, max_points: int = 300) -> float:
    """A round bin width (0.5, 1, 2, 5, 10 ... s) that keeps a series under ``max_points``."""
    for width in (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0):
        if seconds / width <= max_points:
            return width
    return seconds / max_points
