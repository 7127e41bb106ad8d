"""Near-duplicate detection: word shingles summarised by a MinHash signature.

Two texts are compared by the Jaccard similarity of their sets of ``k``-word
shingles. A MinHash signature estimates it from a fixed number of integers, so a
signature can be stored with each article (as a JSON list in the QC report, and
packed as 4-byte integers beside it for the look-up) and later articles compared
against it without keeping, or re-reading, the earlier text.

Everything is deterministic across processes and Python versions: shingles are
hashed with BLAKE2b (never the salted built-in ``hash``) and the permutations'
parameters are derived from BLAKE2b of their index.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Final, overload

import numpy as np
import numpy.typing as npt

DEFAULT_SHINGLE_WORDS: Final = 5
DEFAULT_NUM_PERM: Final = 64
#: The Mersenne prime 2**31 - 1: with a, b and x below it, a*x + b fits in 64 bits, so
#: numpy computes every permutation of every shingle in one vectorised step. Shingle
#: hashes are reduced to 31 bits; for articles of a few thousand shingles collisions
#: are negligible next to MinHash's own estimation error.
_PRIME: Final = (1 << 31) - 1
#: The value of every position of an empty text's signature; it never counts as a match.
EMPTY_SLOT: Final = _PRIME
# Whatever is neither letter nor digit at a word's ends: quotes, brackets, punctuation.
_EDGES: Final = re.compile(r"^[\W_]+|[\W_]+$")


def _blake(data: bytes, size: int) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=size).digest(), "big")


def normalised_words(text: str) -> list[str]:
    """Lower-case words of ``text`` without the punctuation around them."""
    words = (_EDGES.sub("", token) for token in text.casefold().split())
    return [word for word in words if word]


def shingles(text: str, k: int = DEFAULT_SHINGLE_WORDS) -> set[int]:
    """Return the stable 64-bit hashes of every run of ``k`` consecutive words.

    A text of fewer than ``k`` (but at least one) words is a single shingle; a text
    without words has none.

    Raises:
        ValueError: ``k`` is less than 1.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    words = normalised_words(text)
    runs = [words[i : i + k] for i in range(max(1, len(words) - k + 1))] if words else []
    return {_blake("\x1f".join(run).encode(), 8) for run in runs}


@lru_cache(maxsize=8)
def _permutations(num_perm: int) -> tuple[tuple[int, int], ...]:
    """``(a, b)`` of each hash ``x -> (a*x + b) mod p``, the same in every process."""
    parameters = []
    for index in range(num_perm):
        seed = _blake(f"batchline-minhash-{index}".encode(), 16)
        high, low = divmod(seed, 1 << 64)
        parameters.append((high % (_PRIME - 1) + 1, low % _PRIME))
    return tuple(parameters)


def minhash_signature(text: str, num_perm: int = DEFAULT_NUM_PERM) -> list[int]:
    """Return the MinHash signature of ``text``'s 5-word shingles.

    Args:
        text: Plain text (an article's visible text).
        num_perm: How many hash functions; more means a finer estimate.

    Raises:
        ValueError: ``num_perm`` is less than 1.

    Returns:
        ``num_perm`` integers below 2**31, ready to be stored as JSON; a text
        without words gives ``EMPTY_SLOT`` everywhere.
    """
    if num_perm < 1:
        raise ValueError(f"num_perm must be at least 1, got {num_perm}")
    hashes = np.fromiter((value % _PRIME for value in shingles(text)), dtype=np.uint64)
    if not hashes.size:
        return [EMPTY_SLOT] * num_perm
    a, b = _parameter_arrays(num_perm)
    values = (a[:, None] * hashes[None, :] + b[:, None]) % np.uint64(_PRIME)
    return [int(value) for value in values.min(axis=1)]


@lru_cache(maxsize=8)
def _parameter_arrays(num_perm: int) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    parameters = _permutations(num_perm)
    a = np.array([pair[0] for pair in parameters], dtype=np.uint64)
    b = np.array([pair[1] for pair in parameters], dtype=np.uint64)
    return a, b


def estimated_jaccard(sig_a: Sequence[int], sig_b: Sequence[int]) -> float:
    """Estimate the Jaccard similarity of two texts from their signatures.

    The share of positions where both signatures hold the same value; positions
    of an empty text never match, so an empty text resembles nothing.

    Raises:
        ValueError: the signatures are empty or of different lengths.
    """
    if not sig_a or len(sig_a) != len(sig_b):
        raise ValueError(f"signatures must be non-empty and alike: {len(sig_a)} vs {len(sig_b)}")
    matches = sum(a == b != EMPTY_SLOT for a, b in zip(sig_a, sig_b, strict=True))
    return matches / len(sig_a)


#: How the ledger packs a signature (``stage_outputs.signature``): big-endian 4-byte
#: integers, as PostgreSQL's ``int4send`` writes them. Every value is below 2**31.
PACKED_DTYPE: Final = np.dtype(">i4")


def pack_signature(signature: Sequence[int]) -> bytes:
    """``signature`` as the ledger stores it: ``len(signature)`` big-endian int4s."""
    return np.asarray(signature, dtype=PACKED_DTYPE).tobytes()


class SignatureSet(Sequence[list[int]]):
    """Earlier signatures, compared with many articles: their matrix is built once.

    QC compares each article of a chunk with up to 200 of its publisher's earlier
    signatures; converting those lists to an array for every article cost more than
    the comparison itself, and grew with the publisher's history.
    """

    def __init__(self, rows: Sequence[list[int]]) -> None:
        """``rows``: the signatures, in the order the caller gives them."""
        self._rows: list[list[int]] | None = list(rows)
        self._packed: npt.NDArray[np.int64] | None = None
        self._matrices: dict[int, npt.NDArray[np.int64]] = {}

    @classmethod
    def from_packed(cls, packed: bytes, num_perm: int) -> SignatureSet:
        """Signatures of ``num_perm`` values packed end to end (see :func:`pack_signature`).

        The matrix is the bytes themselves, reinterpreted: no per-value decoding.

        Raises:
            ValueError: ``packed`` is not a whole number of signatures.
        """
        width = num_perm * PACKED_DTYPE.itemsize
        if num_perm < 1 or len(packed) % width:
            raise ValueError(f"{len(packed)} bytes are not signatures of {num_perm} values")
        signatures = cls(())
        matrix = np.frombuffer(packed, dtype=PACKED_DTYPE).astype(np.int64)
        signatures._rows = None
        signatures._packed = signatures._matrices[num_perm] = matrix.reshape(-1, num_perm)
        return signatures

    def _lists(self) -> list[list[int]]:
        # Lists only for callers that iterate; QC compares through matrix().
        if self._rows is None:
            assert self._packed is not None
            self._rows = self._packed.tolist()
        return self._rows

    @overload
    def __getitem__(self, index: int) -> list[int]: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[list[int]]: ...
    def __getitem__(self, index: int | slice) -> list[int] | Sequence[list[int]]:
        return self._lists()[index]

    def __len__(self) -> int:
        return len(self._packed) if self._packed is not None else len(self._lists())

    def matrix(self, length: int) -> npt.NDArray[np.int64]:
        """The signatures of ``length`` values as rows of one array (built on first use)."""
        if length not in self._matrices:
            rows = [row for row in self._lists() if len(row) == length]
            self._matrices[length] = np.asarray(rows, dtype=np.int64).reshape(len(rows), length)
        return self._matrices[length]


def max_similarity(signature: Sequence[int], earlier: Sequence[Sequence[int]]) -> float:
    """The highest estimated Jaccard of ``signature`` against ``earlier`` (0.0 if none).

    Earlier signatures of another length (made with another ``num_perm``) are skipped.
    A :class:`SignatureSet` is compared through its matrix, built once for all articles.
    """
    if not signature:
        return 0.0
    if isinstance(earlier, SignatureSet):
        theirs = earlier.matrix(len(signature))
    else:
        comparable = [other for other in earlier if len(other) == len(signature)]
        theirs = np.asarray(comparable, dtype=np.int64)
    if not len(theirs):
        return 0.0
    mine = np.asarray(signature, dtype=np.int64)
    matches = (theirs == mine) & (mine != EMPTY_SLOT)
    return float(matches.mean(axis=1).max())
