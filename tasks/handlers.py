"""Which pure handler each stage runs, and what stored input it needs.

The delivery handler is the one with an external effect: it renders the page
(pure) and hands it to the publisher with an idempotency key derived from
(batch, order, stage). The key and the receipt are remembered in the ledger for
``BATCH_IDEMPOTENCY_TTL_HOURS``, so a repeated delivery returns the first receipt
instead of publishing again, whatever the publisher does with the key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

from ledger.db import transaction
from ledger.idempotency import remember, remembered
from pipeline.errors import DataCorruption
from pipeline.manifest import OrderDocument
from pipeline.publishing import FilesystemPublisher, Publisher
from pipeline.settings import get_settings
from pipeline.stages.delivery import render_delivery
from pipeline.stages.preflight import run_preflight
from pipeline.stages.qc import run_qc
from pipeline.stages.writing import run_writing

#: Whose stored output each stage reads (delivery publishes the article, not the QC report).
INPUT_STAGE: Final[dict[str, str | None]] = {
    "preflight": None,
    "writing": "preflight",
    "qc": "writing",
    "delivery": "writing",
}


@dataclass(frozen=True)
class StageContext:
    """What a handler may know besides the order and its input."""

    batch_id: str
    attempt: int


Handler = Callable[[OrderDocument, Any, StageContext], dict[str, Any]]


@lru_cache(maxsize=1)
def publisher() -> Publisher:
    """This process's publisher (the filesystem outbox from ``BATCH_OUTPUT_DIR``)."""
    return FilesystemPublisher(get_settings().batch_output_dir.resolve())


def _need(previous: Any, stage: str) -> dict[str, Any]:
    if not isinstance(previous, dict):
        raise DataCorruption(f"no stored {stage} output to work from")
    return previous


def _preflight(order: OrderDocument, previous: Any, context: StageContext) -> dict[str, Any]:
    return run_preflight(order)


def _writing(order: OrderDocument, previous: Any, context: StageContext) -> dict[str, Any]:
    prompt = _need(previous, "preflight")["prompt"]
    return run_writing(order, prompt, seed=0)


def _qc(order: OrderDocument, previous: Any, context: StageContext) -> dict[str, Any]:
    return run_qc(order, _need(previous, "writing"))


def _delivery(order: OrderDocument, previous: Any, context: StageContext) -> dict[str, Any]:
    rendered = render_delivery(order, _need(previous, "writing"), batch_id=context.batch_id)
    key = rendered["idempotency_key"]
    with transaction() as session:
        receipt = remembered(session, key)
    if receipt is None:
        receipt = publisher().publish(
            key=key,
            batch_id=context.batch_id,
            order_id=order.order_id,
            html_document=rendered["html_document"],
            metadata={"customer_id": order.customer_id, "target_url": str(order.target_url)},
        )
        # Committed at once, before the chunk's outcome: if this worker dies now, the
        # redelivered chunk finds the receipt here and does not publish again.
        with transaction() as session:
            receipt = remember(
                session,
                key=key,
                scope="delivery",
                result=receipt,
                ttl_hours=get_settings().batch_idempotency_ttl_hours,
            )
    return {"receipt": receipt, "published_url": receipt["published_url"]}


HANDLERS: Final[dict[str, Handler]] = {
    "preflight": _preflight,
    "writing": _writing,
    "qc": _qc,
    "delivery": _delivery,
}
