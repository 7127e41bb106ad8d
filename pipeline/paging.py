"""Opaque cursors for keyset pagination: the sort key of the last row a page showed.

A cursor is URL-safe base64 of a JSON list, so a client passes it back unchanged and
the next page starts strictly after that row, however many rows arrive meanwhile.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from pipeline.manifest import ManifestError


def encode_cursor(values: list[Any]) -> str:
    """The cursor of a row whose sort key is ``values`` (JSON-ready)."""
    raw = json.dumps(values, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, length: int) -> list[Any]:
    """The sort key inside ``cursor``.

    Raises:
        ManifestError: ``cursor`` was not made by :func:`encode_cursor` for this listing.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
    except (binascii.Error, ValueError):
        raise ManifestError("cursor", "not a cursor this API returned") from None
    if not isinstance(values, list) or len(values) != length:
        raise ManifestError("cursor", "not a cursor this API returned")
    return values
