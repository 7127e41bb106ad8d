"""The vectorised walk over py3langid's automaton counts exactly what py3langid counts."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import py3langid
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from py3langid.langid import visit_counts

from pipeline import language

_BYTES = np.arange(256, dtype=np.intp)


def _moves(states: npt.NDArray[np.intp]) -> npt.NDArray[np.intp]:
    """The next state of each of ``states`` for every byte: one row of 256 per state."""
    walk = language._walk()
    moves: npt.NDArray[np.intp] = walk.moves[walk.rows[states][:, None] + _BYTES[None, :]]
    return moves.astype(np.intp)


def _labels() -> tuple[npt.NDArray[np.intp], npt.NDArray[np.int64]]:
    """Each state's depth and the bytes that lead to it from the start (packed), breadth first."""
    count = len(language._walk().rows)
    depth = np.full(count, -1, dtype=np.intp)
    label = np.zeros(count, dtype=np.int64)
    depth[0], frontier = 0, np.zeros(1, dtype=np.intp)
    while frontier.size:
        targets = _moves(frontier).ravel()
        sources, bytes_ = np.repeat(frontier, 256), np.tile(_BYTES, frontier.size)
        new = depth[targets] < 0
        found, first = np.unique(targets[new], return_index=True)
        depth[found] = depth[frontier[0]] + 1
        label[found] = label[sources[new][first]] * 256 + bytes_[new][first]
        frontier = found
    return depth, label


def test_the_model_is_an_aho_corasick_automaton_of_depth_six() -> None:
    # The property language.py rests on, checked over every state and byte of the
    # installed model: each move either extends the state's label by the byte or
    # equals the move from the state of the label without its first byte (its
    # failure state). Then a state is the longest suffix of the text read so far
    # that is a label, and labels have at most DEPTH bytes.
    depth, label = _labels()
    assert depth.min() == 0 and depth.max() == language.DEPTH
    assert len(set(zip(depth.tolist(), label.tolist(), strict=True))) == len(depth)
    walk = language._walk()
    failure = np.zeros(len(depth), dtype=np.intp)
    for position in range(1, language.DEPTH):
        longer = depth > position
        byte = (label[longer] >> (8 * (depth[longer] - 1 - position))) & 255
        failure[longer] = walk.moves[walk.rows[failure[longer]] + byte]
    broken = 0
    for start in range(1, len(depth), 4096):
        states = np.arange(start, min(len(depth), start + 4096))
        moves = _moves(states)
        extends = (depth[moves] == depth[states][:, None] + 1) & (
            label[moves] == label[states][:, None] * 256 + _BYTES[None, :]
        )
        broken += int((~(extends | (moves == _moves(failure[states])))).sum())
    from_start = _moves(np.zeros(1, dtype=np.intp))[0]
    assert broken == 0
    assert ((depth[from_start] == 1) | (from_start == 0)).all()


def _py3langid_visits(data: bytes) -> list[tuple[int, int]]:
    identifier = py3langid.langid._get_identifier()
    counts = visit_counts(identifier.tk_nextmove, identifier._rowbase, identifier.tk_output, data)
    return list((counts or {}).items())


@pytest.mark.parametrize(
    "data", [b"", b"a", b"ab", b"abcde", b"abcdef", b"abcdefg", "Öl är gott".encode(), b"\xff" * 9]
)
def test_short_inputs_count_as_py3langid_counts(data: bytes) -> None:
    assert list(language._walk().visits(data).items()) == _py3langid_visits(data)


@settings(max_examples=300, deadline=None, database=None)
@given(text=st.text(max_size=300))
def test_any_text_is_classified_as_py3langid_classifies_it(text: str) -> None:
    data = py3langid.langid.LanguageIdentifier._encode(text)
    assert list(language._walk().visits(data).items()) == _py3langid_visits(data)
    assert language.classify(text) == py3langid.classify(text)[0]
