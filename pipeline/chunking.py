"""Split item ids into the chunks a stage task works on."""

from __future__ import annotations

from collections.abc import Sequence


def split_into_chunks(item_ids: Sequence[int], size: int) -> list[list[int]]:
    """Split ``item_ids`` into consecutive chunks of at most ``size`` ids.

    Raises:
        ValueError: ``size`` is below 1.
    """
    if size < 1:
        raise ValueError(f"chunk size must be at least 1, got {size}")
    return [list(item_ids[start : start + size]) for start in range(0, len(item_ids), size)]
