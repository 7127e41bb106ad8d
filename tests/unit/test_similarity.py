"""Shingles and MinHash: stable across processes, storable as JSON, and sensible estimates."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys

import pytest

from pipeline.similarity import (
    EMPTY_SLOT,
    SignatureSet,
    estimated_jaccard,
    max_similarity,
    minhash_signature,
    normalised_words,
    pack_signature,
    shingles,
)


def prose(seed: int, sentences: int, vocabulary: int = 400) -> list[str]:
    """Sentences of 8-16 pseudo-words drawn from a vocabulary of made-up words."""
    rng = random.Random(seed)
    words = [f"w{seed}x{index}" for index in range(vocabulary)]
    return [
        " ".join(rng.choice(words) for _ in range(rng.randint(8, 16))) + "."
        for _ in range(sentences)
    ]


def words_in(sentences: list[str]) -> int:
    return sum(len(sentence.split()) for sentence in sentences)


# --- shingles -----------------------------------------------------------------------------


def test_shingles_are_blake2b_hashes_of_five_word_runs() -> None:
    expected = {
        int.from_bytes(hashlib.blake2b(run.encode(), digest_size=8).digest(), "big")
        for run in ("a\x1fb\x1fc\x1fd\x1fe", "b\x1fc\x1fd\x1fe\x1ff")
    }

    assert shingles("a b c d e f") == expected


def test_shingles_ignore_case_and_punctuation_around_words() -> None:
    assert shingles("The cat, sat on (the) mat!") == shingles("the cat sat on the mat")
    assert normalised_words("«Hello», world… — fine") == ["hello", "world", "fine"]


def test_a_short_text_is_one_shingle_and_an_empty_one_none() -> None:
    assert len(shingles("three short words")) == 1
    assert shingles("  ... ") == set()
    assert len(shingles("one two three four five six seven", k=5)) == 3


def test_shingle_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="k must be"):
        shingles("text", k=0)


# --- signatures ---------------------------------------------------------------------------


def test_signature_is_a_json_list_of_ints_below_2_63() -> None:
    signature = minhash_signature(" ".join(prose(1, 30)), num_perm=64)

    assert len(signature) == 64
    assert all(isinstance(value, int) and 0 <= value < 2**63 for value in signature)
    assert json.loads(json.dumps(signature)) == signature


def test_signature_is_the_same_in_another_process_with_another_hash_seed() -> None:
    text = " ".join(prose(2, 10))
    script = (
        "import json, sys; from pipeline.similarity import minhash_signature; "
        "print(json.dumps(minhash_signature(sys.argv[1], 16)))"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", script, text],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2")
    }

    assert len(outputs) == 1
    assert json.loads(outputs.pop()) == minhash_signature(text, 16)


def test_num_perm_must_be_positive() -> None:
    with pytest.raises(ValueError, match="num_perm"):
        minhash_signature("text", num_perm=0)


def test_an_empty_text_has_a_signature_that_matches_nothing() -> None:
    empty = minhash_signature("", num_perm=8)

    assert empty == [EMPTY_SLOT] * 8
    assert estimated_jaccard(empty, empty) == 0.0


# --- estimates ----------------------------------------------------------------------------


def test_identical_texts_estimate_one() -> None:
    text = " ".join(prose(3, 40))

    assert estimated_jaccard(minhash_signature(text), minhash_signature(text)) == 1.0


def test_unrelated_texts_estimate_low() -> None:
    first, second = " ".join(prose(4, 40)), " ".join(prose(5, 40))

    assert estimated_jaccard(minhash_signature(first), minhash_signature(second)) < 0.1


def test_changing_one_sentence_of_a_500_word_text_keeps_it_similar() -> None:
    # Given a text of about 500 words
    sentences = prose(6, 42)
    assert 450 <= words_in(sentences) <= 560
    # When one sentence in the middle is replaced
    changed = [*sentences[:20], prose(7, 1)[0], *sentences[21:]]

    # Then the texts still read as near-duplicates
    similarity = estimated_jaccard(
        minhash_signature(" ".join(sentences)), minhash_signature(" ".join(changed))
    )
    assert similarity > 0.7


def test_estimate_is_close_to_the_true_jaccard() -> None:
    shared = prose(8, 30)
    first = " ".join(shared + prose(9, 30))
    second = " ".join(shared + prose(10, 30))
    a, b = shingles(first), shingles(second)
    true = len(a & b) / len(a | b)

    estimate = estimated_jaccard(minhash_signature(first, 256), minhash_signature(second, 256))

    assert abs(estimate - true) < 0.1


def test_signatures_of_different_lengths_cannot_be_compared() -> None:
    with pytest.raises(ValueError, match="alike"):
        estimated_jaccard([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="alike"):
        estimated_jaccard([], [])


def test_max_similarity_takes_the_closest_earlier_signature() -> None:
    text = " ".join(prose(11, 40))
    signature = minhash_signature(text)
    unrelated = minhash_signature(" ".join(prose(12, 40)))

    assert max_similarity(signature, []) == 0.0
    assert max_similarity(signature, [unrelated]) < 0.1
    assert max_similarity(signature, [unrelated, signature]) == 1.0


def test_max_similarity_skips_signatures_made_with_another_num_perm() -> None:
    text = " ".join(prose(13, 40))

    assert max_similarity(minhash_signature(text), [minhash_signature(text, 32)]) == 0.0


def test_a_signature_set_compares_as_its_lists_do() -> None:
    # Given earlier signatures of two lengths, one of them a near copy of the article
    texts = [" ".join(prose(seed, 40)) for seed in (21, 22, 23)]
    signature = minhash_signature(texts[0])
    near = [*signature[:48], *minhash_signature(texts[1])[48:]]
    earlier = [minhash_signature(texts[1]), near, minhash_signature(texts[0], 32)]
    shared = SignatureSet(earlier)

    # Then every article gets what the plain lists give, from one matrix per length
    for mine in (signature, minhash_signature(texts[2]), minhash_signature(texts[0], 32)):
        assert max_similarity(mine, shared) == max_similarity(mine, earlier)
    assert max_similarity(signature, shared) == 0.75
    assert max_similarity(signature, SignatureSet([])) == 0.0
    assert list(shared) == earlier and len(shared) == 3


def test_packed_signatures_compare_as_their_lists_do() -> None:
    # Given signatures packed end to end as the ledger stores them (empty text included)
    texts = [" ".join(prose(seed, 40)) for seed in (31, 32, 33)]
    earlier = [minhash_signature(text) for text in texts] + [minhash_signature("")]
    packed = SignatureSet.from_packed(b"".join(pack_signature(s) for s in earlier), 64)

    # Then the set reads back the same lists, and every article gets the same answer
    assert list(packed) == earlier and len(packed) == 4
    near = [*earlier[0][:40], *minhash_signature(" ".join(prose(34, 40)))[40:]]
    for mine in (earlier[0], near, minhash_signature(" ".join(prose(35, 40))), earlier[3]):
        assert max_similarity(mine, packed) == max_similarity(mine, earlier)
    # A signature of another length compares with none of them, as with lists
    assert max_similarity(minhash_signature(texts[0], 32), packed) == 0.0


def test_packing_is_four_big_endian_bytes_a_value_and_rejects_partial_signatures() -> None:
    assert pack_signature([1, EMPTY_SLOT]) == b"\x00\x00\x00\x01\x7f\xff\xff\xff"
    with pytest.raises(ValueError, match="not signatures of 64 values"):
        SignatureSet.from_packed(b"\x00" * 12, 64)
