"""Language detection: py3langid's bundled model, with its byte walk vectorised.

py3langid reads a text's bytes through a finite automaton, one Python step per
byte (about a millisecond for an article), and counts the features of the states
it visits. Its automaton is an Aho-Corasick matcher of byte n-grams (langid.py's
``Scanner``): the state after any byte is the longest suffix of the text so far
that begins one of its n-grams, at most :data:`DEPTH` bytes long. So the state at
every position can be found by walking from the start state over the last
``DEPTH`` bytes alone, and numpy does that for every position at once. The counts,
their order and so the scores are exactly py3langid's;
``tests/unit/test_language.py`` checks the property over the whole model and the
result against ``py3langid.classify``. The model's arrays, its encoding and its scoring
are py3langid's own (0.4's attributes): an upgrade that renames them fails that test,
not silently.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import py3langid
from py3langid.langid import RAW_FLOOR

#: The longest n-gram of the model in bytes: its automaton's deepest state.
DEPTH: Final = 6


@dataclass(frozen=True)
class _Walk:
    """The model's automaton as arrays: ``state' = moves[rows[state] + byte]``."""

    identifier: Any
    moves: npt.NDArray[np.unsignedinteger[Any]]
    rows: npt.NDArray[np.intp]
    features: npt.NDArray[np.intp]

    def states(self, data: bytes) -> npt.NDArray[np.intp]:
        """The automaton's state after each byte of ``data``, read from the start state."""
        text = np.frombuffer(data, dtype=np.uint8).astype(np.intp)
        head = min(DEPTH - 1, len(text))
        states = np.empty(len(text), dtype=np.intp)
        state = 0
        for position in range(head):  # fewer than DEPTH bytes read: the walk itself
            state = states[position] = self.moves[self.rows[state] + text[position]]
        tail = np.zeros(len(text) - head, dtype=np.intp)
        for offset in range(DEPTH):  # then each position from its last DEPTH bytes
            window = text[offset + head + 1 - DEPTH : len(text) + offset + 1 - DEPTH]
            tail = self.moves[self.rows[tail] + window].astype(np.intp)
        states[head:] = tail
        return states

    def visits(self, data: bytes) -> Counter[int]:
        """py3langid's ``visit_counts``: feature -> count, in order of first visit."""
        found = self.features[self.states(data)]
        return Counter(found[found >= 0].tolist())


@lru_cache(maxsize=1)
def _walk() -> _Walk:
    identifier = py3langid.langid._get_identifier()
    return _Walk(
        identifier=identifier,
        moves=np.frombuffer(
            identifier.tk_nextmove, dtype=np.dtype(identifier.tk_nextmove.typecode)
        ),
        rows=np.asarray(identifier._rowbase, dtype=np.intp),
        features=np.asarray(identifier.tk_output, dtype=np.intp),
    )


def classify(text: str) -> str:
    """``py3langid.classify(text)[0]``: the ISO 639-1 code of the most likely language."""
    walk = _walk()
    identifier = walk.identifier
    visits = walk.visits(identifier._encode(text))
    if visits:
        scores = identifier._sparse_score(visits, identifier.nb_ptc)
    else:
        scores = np.full(len(identifier.nb_classes), RAW_FLOOR, dtype=np.float32)
    # As py3langid's _decide: a language with two columns (srl -> sr) keeps the better.
    for first, second in identifier._alias_pairs:
        scores[first] = max(scores[first], scores[second])
        scores[second] = RAW_FLOOR
    return str(identifier.nb_classes[int(scores.argmax())])
