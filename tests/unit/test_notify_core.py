"""The notification envelope's signature and the progress milestones (``pipeline.notify``)."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from pipeline.notify import body_bytes, milestones_crossed, sign, verify


def test_signature_is_hex_hmac_sha256_of_the_exact_body() -> None:
    body = body_bytes({"kind": "finalized", "batch_id": "b", "data": {"n": 1}})
    expected = hmac.new(b"k", body, hashlib.sha256).hexdigest()
    assert sign(body, "k") == f"sha256={expected}"
    assert verify(body, "k", sign(body, "k"))
    assert not verify(body + b" ", "k", sign(body, "k"))
    assert not verify(body, "other", sign(body, "k"))


@pytest.mark.parametrize(
    ("before", "after", "total", "crossed"),
    [
        (0, 1, 4, [25]),
        (0, 4, 4, [25, 50, 75, 100]),
        (1, 2, 4, [50]),
        (2, 2, 4, []),
        (0, 2, 7, [25]),  # 28 %
        (6, 7, 7, [100]),  # only the last order reaches 100 %
        (0, 1, 0, []),
    ],
)
def test_milestones_crossed(before: int, after: int, total: int, crossed: list[int]) -> None:
    assert milestones_crossed(before, after, total) == crossed
