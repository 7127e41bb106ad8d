"""Split item ids into the chunks a stage task works on."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


def split_into_chunks(item_ids: Sequence[int], size: int) -> list[list[int]]:
    """Split ``item_ids`` into consecutive chunks of at most ``size`` ids.

    Raises:
        ValueError: ``size`` is below 1.
    """
    if size < 1:
        raise ValueError(f"chunk size must be at least 1, got {size}")
    return [list(item_ids[start : start + size]) for start in range(0, len(item_ids), size)]


def plan_chunks(
    ranked: Sequence[T],
    key: Callable[[T], K],
    size: Callable[[K], int],
    max_chunks: int,
) -> list[list[T]]:
    """Group ``ranked`` work into at most ``max_chunks`` chunks, best first.

    Items sharing a ``key`` (a batch and a stage: one stage task's message) fill
    a chunk up to ``size(key)`` in rank order; a new chunk opens when the last
    one of its key is full, as long as fewer than ``max_chunks`` exist. Items that
    fit nowhere are left out (they stay where they were). Chunks come in the
    order of their best item, so publishing them in order keeps the ranking.
    """
    chunks: list[list[T]] = []
    open_chunk: dict[K, list[T]] = {}
    for item in ranked:
        group = key(item)
        chunk = open_chunk.get(group)
        if chunk is None or len(chunk) >= size(group):
            if len(chunks) >= max_chunks:
                continue  # an open chunk of another key may still take later items
            chunk = []
            chunks.append(chunk)
            open_chunk[group] = chunk
        chunk.append(item)
    return chunks
