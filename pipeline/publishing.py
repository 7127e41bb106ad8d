"""Publishing: the one stage effect outside the ledger, made idempotent by a key.

:class:`FilesystemPublisher` treats a directory as the external system. Every file
is written atomically (temporary file in the same directory, fsync, rename), and
the receipt is written last, so its presence means the publication completed. A
second publish with the same key finds the receipt and changes nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from pipeline.errors import DataError

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class Publisher(Protocol):
    """Somewhere finished pages go; publishing twice with one key has one effect."""

    def publish(
        self,
        *,
        key: str,
        batch_id: str,
        order_id: str,
        html_document: str,
        metadata: dict[str, Any],
    ) -> dict[str, Any]:
        """Publish ``html_document`` once per ``key`` and return the receipt."""
        ...


def safe_slug(identifier: str) -> str:
    """Return ``identifier`` as a safe file name: ``:``, ``@`` and the like become ``_``.

    A leading dot is dropped too, so a slug is never a hidden file or ``..``.
    """
    slug = _UNSAFE.sub("_", identifier).lstrip(".")
    return slug or "_"


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _temporary_copy(directory: Path, name: str, data: bytes) -> Path:
    """Write ``data`` durably to a new temporary file in ``directory``."""
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return Path(temporary)


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so readers see the old or the new file, never half."""
    temporary = _temporary_copy(path.parent, path.name, data)
    try:
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def create_atomically(path: Path, data: bytes) -> bool:
    """Create ``path`` with ``data`` unless it exists; return whether this call created it.

    A hard link fails when the name is taken, unlike a rename, so of two racing
    writers exactly one wins and the other can read the winner's file.
    """
    temporary = _temporary_copy(path.parent, path.name, data)
    try:
        os.link(temporary, path)
    except FileExistsError:
        return False
    finally:
        temporary.unlink(missing_ok=True)
    return True


def _sync_directory(directory: Path) -> None:
    # Makes the renames themselves durable; not every platform can open a directory.
    with contextlib.suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


class FilesystemPublisher:
    """Publish pages as ``<outbox>/<batch_id>/<slug>.html`` with a JSON receipt beside them."""

    def __init__(self, outbox: Path, *, clock: Callable[[], datetime] = _utc_now) -> None:
        self._outbox = outbox
        self._clock = clock

    def paths(self, batch_id: str, order_id: str) -> tuple[Path, Path]:
        """Return the page's and the receipt's path for one order."""
        directory = self._outbox / safe_slug(batch_id)
        slug = safe_slug(order_id)
        return directory / f"{slug}.html", directory / f"{slug}.receipt.json"

    def publish(
        self,
        *,
        key: str,
        batch_id: str,
        order_id: str,
        html_document: str,
        metadata: dict[str, Any],
    ) -> dict[str, Any]:
        """Write the page and its receipt, or return the receipt of an earlier publish.

        Raises:
            DataError: a receipt for this page exists under another key, or is unreadable.

        Returns:
            ``{"idempotency_key", "batch_id", "order_id", "published_url",
            "published_at", "sha256", "metadata"}``.
        """
        page, receipt_path = self.paths(batch_id, order_id)
        if receipt_path.exists():
            return _earlier_receipt(receipt_path, key)
        page.parent.mkdir(parents=True, exist_ok=True)
        data = html_document.encode("utf-8")
        # The page first: a crash before the receipt leaves a page that the retry replaces.
        write_atomically(page, data)
        receipt = {
            "idempotency_key": key,
            "batch_id": batch_id,
            "order_id": order_id,
            "published_url": page.absolute().as_uri(),
            "published_at": self._clock().astimezone(UTC).isoformat(),
            "sha256": hashlib.sha256(data).hexdigest(),
            "metadata": metadata,
        }
        encoded = json.dumps(receipt, sort_keys=True, indent=2).encode("utf-8")
        if not create_atomically(receipt_path, encoded):
            return _earlier_receipt(receipt_path, key)  # a concurrent publish won
        _sync_directory(page.parent)
        loaded: dict[str, Any] = json.loads(encoded)
        return loaded


def _earlier_receipt(path: Path, key: str) -> dict[str, Any]:
    try:
        receipt = json.loads(path.read_bytes())
    except (OSError, ValueError) as error:
        raise DataError(f"unreadable receipt {path}: {error}", code="receipt_unreadable") from error
    if not isinstance(receipt, dict) or receipt.get("idempotency_key") != key:
        found = receipt.get("idempotency_key") if isinstance(receipt, dict) else None
        raise DataError(
            f"receipt {path} belongs to another publication",
            details={"path": str(path), "expected_key": key, "found_key": found},
            code="receipt_mismatch",
        )
    return receipt
