"""Delivery rendering: wrap the approved article in a complete HTML5 page.

Pure: the page, its file-safe slug and the idempotency key that lets the
publisher recognise a repeated delivery of the same order in the same batch.
"""

from __future__ import annotations

import hashlib
import html
from typing import Any

from pipeline.manifest import OrderDocument
from pipeline.publishing import safe_slug


def idempotency_key(batch_id: str, order_id: str) -> str:
    """Return the key that identifies one order's delivery within one batch."""
    return hashlib.sha256(f"{batch_id}:{order_id}:delivery".encode()).hexdigest()


def render_document(language: str, title: str, fragment: str) -> str:
    """Return a complete HTML5 document holding ``fragment`` in an ``<article>``.

    ``fragment`` is trusted HTML (the writer escaped it and QC parsed it);
    ``language`` and ``title`` are escaped here.
    """
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="{html.escape(language, quote=True)}">\n'
        "<head>\n"
        '<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n"
        "</head>\n"
        "<body>\n"
        "<article>\n"
        f"{fragment}\n"
        "</article>\n"
        "</body>\n"
        "</html>\n"
    )


def render_delivery(
    order: OrderDocument, article: dict[str, Any], *, batch_id: str
) -> dict[str, Any]:
    """Render the page for ``order`` from the writer's ``article``.

    Args:
        order: The order being delivered.
        article: The writing stage's output (``title`` and ``html``).
        batch_id: The batch the delivery belongs to; part of the idempotency key.

    Returns:
        ``{"html_document", "slug", "idempotency_key"}``.
    """
    title = str(article.get("title") or order.topic)
    return {
        "html_document": render_document(order.language, title, str(article["html"])),
        "slug": safe_slug(order.order_id),
        "idempotency_key": idempotency_key(batch_id, order.order_id),
    }
