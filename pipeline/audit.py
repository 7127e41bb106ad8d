"""Audit concurrency caps after the fact, from the spans the ledger stores."""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from datetime import datetime


def max_overlap(spans: Iterable[tuple[datetime, datetime]]) -> int:
    """The largest number of spans open at one instant.

    A span that ends exactly when another starts does not overlap it (a slot
    given back is taken again).
    """
    listed = list(spans)
    events = sorted(
        [(start, 1) for start, _ in listed] + [(end, -1) for _, end in listed],
        key=lambda event: (event[0], event[1]),  # ends (-1) before starts at one instant
    )
    open_now = peak = 0
    for _, change in events:
        open_now += change
        peak = max(peak, open_now)
    return peak


def max_overlap_by(spans: Iterable[tuple[Hashable, datetime, datetime]]) -> dict[Hashable, int]:
    """:func:`max_overlap` per scope (a customer, a publisher domain...)."""
    grouped: dict[Hashable, list[tuple[datetime, datetime]]] = {}
    for scope, start, end in spans:
        grouped.setdefault(scope, []).append((start, end))
    return {scope: max_overlap(group) for scope, group in grouped.items()}
