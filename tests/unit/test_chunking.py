"""Chunking: item ids split into consecutive chunks of at most the stage's size."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.chunking import split_into_chunks


@pytest.mark.parametrize(
    ("item_ids", "size", "expected"),
    [
        ([1, 2, 3, 4, 5], 2, [[1, 2], [3, 4], [5]]),
        ([1, 2, 3, 4], 2, [[1, 2], [3, 4]]),
        ([1, 2, 3], 10, [[1, 2, 3]]),
        ([1, 2, 3], 1, [[1], [2], [3]]),
        ([7], 1, [[7]]),
        ([], 5, []),
    ],
)
def test_ids_are_split_into_consecutive_chunks(
    item_ids: list[int], size: int, expected: list[list[int]]
) -> None:
    assert split_into_chunks(item_ids, size) == expected


def test_a_tuple_of_ids_gives_lists() -> None:
    assert split_into_chunks((4, 5, 6), 2) == [[4, 5], [6]]


@pytest.mark.parametrize("size", [0, -1, -100])
def test_a_chunk_size_below_one_is_rejected(size: int) -> None:
    with pytest.raises(ValueError, match=f"chunk size must be at least 1, got {size}"):
        split_into_chunks([1, 2, 3], size)


def test_the_input_is_not_changed() -> None:
    item_ids = [1, 2, 3]

    chunks = split_into_chunks(item_ids, 2)
    chunks[0].append(99)

    assert item_ids == [1, 2, 3]


@settings(deadline=None, database=None)
@given(item_ids=st.lists(st.integers(1, 10**9)), size=st.integers(1, 300))
def test_chunks_keep_every_id_once_in_order_and_only_the_last_is_short(
    item_ids: list[int], size: int
) -> None:
    chunks = split_into_chunks(item_ids, size)

    assert [item for chunk in chunks for item in chunk] == item_ids
    assert all(chunk for chunk in chunks)
    assert all(len(chunk) == size for chunk in chunks[:-1])
    assert all(len(chunk) <= size for chunk in chunks)
    assert len(chunks) == -(-len(item_ids) // size)
