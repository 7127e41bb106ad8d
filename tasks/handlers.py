"""The handler of each stage: the shell around its pure core function.

Every handler gets the order, the stored output of the stage it builds on (the
registry's ``input_stage``), and a :class:`StageContext` carrying what the
stage's preparer loaded for the item (``tasks.preparers``). ``tasks.stage_runtime``
pairs each handler with its stage record and preparer.

The delivery handler is the one with an external effect: it renders the page
(pure) and hands it to the publisher with an idempotency key derived from
(batch, order, stage). The key and the receipt are remembered in the ledger for
``BATCH_IDEMPOTENCY_TTL_HOURS``, so a repeated delivery returns the first receipt
instead of publishing again, whatever the publisher does with the key.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

from ledger.db import transaction
from ledger.idempotency import remember
from metrics.redis_client import redis_client
from pipeline.catalog import PublisherProfile
from pipeline.errors import DataCorruption
from pipeline.manifest import OrderDocument
from pipeline.pacing import paced
from pipeline.publishing import FilesystemPublisher, Publisher
from pipeline.settings import get_settings
from pipeline.stages.delivery import render_delivery
from pipeline.stages.preflight import run_preflight
from pipeline.stages.qc import judge_article
from pipeline.webhook import WebhookPublisher
from pipeline.writers import Writer, make_writer
from tasks.limits.rate import RedisRateGate


@dataclass(frozen=True)
class StageContext:
    """What a handler may know besides the order and its input."""

    batch_id: str
    attempt: int
    prepared: Any = None


Handler = Callable[[OrderDocument, Any, StageContext], dict[str, Any]]

#: A ``conc=N`` slot of preflight (pure, milliseconds) frees itself this long after
#: its worker died mid-call.
PREFLIGHT_SLOT_LEASE_SECONDS: Final = 60.0


#: A worker's first chunk calls the builders below from up to ``BATCH_IO_CONCURRENCY``
#: threads at once, and ``lru_cache`` alone lets each of them build its own (Python's
#: documentation says so): an httpx client and its TLS context cost 30-50 ms of CPU, so
#: a chunk of 25 built 25 and kept one. Under this lock the first caller builds and the
#: others wait for its object. Reentrant: the writer's and the publisher's builders
#: take the rate gate's.
_BUILDING = threading.RLock()


def rate_gate() -> RedisRateGate:
    """The shared token buckets of ``BATCH_RATE_LIMITS`` (one Redis call per request)."""
    with _BUILDING:
        return _rate_gate()


def writer() -> Writer:
    """This process's writer (``WRITER_BACKEND``)."""
    with _BUILDING:
        return _writer()


def publisher() -> Publisher:
    """This process's publisher (``DELIVERY_BACKEND``)."""
    with _BUILDING:
        return _publisher()


@lru_cache(maxsize=1)
def _rate_gate() -> RedisRateGate:
    return RedisRateGate(redis_client, get_settings().rate_limits())


@lru_cache(maxsize=1)
def _writer() -> Writer:
    return make_writer(get_settings(), rate_gate())


@lru_cache(maxsize=1)
def _publisher() -> Publisher:
    settings = get_settings()
    if settings.delivery_backend == "webhook":
        return WebhookPublisher(
            _endpoint_for,
            timeout=settings.delivery_timeout_seconds,
            gate=rate_gate(),
            gate_max_wait=settings.batch_rate_limit_max_wait_seconds,
        )
    return FilesystemPublisher(settings.batch_output_dir.resolve())


def _endpoint_for(domain: str) -> str | None:
    from cache_warming.publishers import publisher_profiles

    profile = publisher_profiles([domain]).get(domain)
    return str(profile.webhook_url) if profile and profile.webhook_url else None


def _need(previous: Any, stage: str) -> dict[str, Any]:
    if not isinstance(previous, dict):
        raise DataCorruption(f"no stored {stage} output to work from", code="stage_input_missing")
    return previous


def handle_preflight(order: OrderDocument, previous: Any, context: StageContext) -> dict[str, Any]:
    """Check the order against the catalog and its customer's history; build the prompt.

    Each order is one ``preflight`` call of ``BATCH_RATE_LIMITS`` (the batch guide's
    100/min, burst 20): a longer wait defers the order as ``RateLimited``.
    """
    settings = get_settings()
    with paced(
        rate_gate(),
        "preflight",
        max_wait=settings.batch_rate_limit_max_wait_seconds,
        lease_seconds=PREFLIGHT_SLOT_LEASE_SECONDS,
    ):
        return run_preflight(order, context.prepared)


def handle_writing(order: OrderDocument, previous: Any, context: StageContext) -> dict[str, Any]:
    """Write the article from preflight's prompt (with QC's feedback on a rewrite)."""
    prompt = _need(previous, "preflight")["prompt"]
    prepared = context.prepared or {}
    return writer().write(
        order, prompt, feedback=prepared.get("feedback", ()), attempt=prepared.get("attempt", 1)
    )


def handle_qc(order: OrderDocument, previous: Any, context: StageContext) -> dict[str, Any]:
    """Check the written article; a fixable rejection asks for a rewrite (``QC_MAX_REWRITES``)."""
    prepared = context.prepared or {}
    return judge_article(
        order,
        _need(previous, "writing"),
        publisher=prepared.get("publisher"),
        earlier_signatures=prepared.get("signatures", ()),
        rewrites_done=prepared.get("rewrites", 0),
        max_rewrites=get_settings().qc_max_rewrites,
    )


def handle_delivery(order: OrderDocument, previous: Any, context: StageContext) -> dict[str, Any]:
    """Publish the article once per idempotency key; return the receipt.

    The key is the order's lineage's (its first batch and the order id), so the
    original batch and every recovery of it publish the order at most once; the
    publisher is told that batch too, so a repeated request carries the same body.
    """
    prepared = context.prepared or {}
    lineage = str(prepared.get("lineage_batch_id") or context.batch_id)
    rendered = render_delivery(order, _need(previous, "writing"), batch_id=lineage)
    key = rendered["idempotency_key"]
    receipt = prepared.get("receipt")  # remembered from an earlier run of this delivery
    if receipt is None:
        receipt = publisher().publish(
            key=key,
            batch_id=lineage,
            order_id=order.order_id,
            html_document=rendered["html_document"],
            metadata=_delivery_metadata(order, prepared.get("publisher")),
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


def _delivery_metadata(order: OrderDocument, profile: PublisherProfile | None) -> dict[str, Any]:
    return {
        "customer_id": order.customer_id,
        "target_url": str(order.target_url),
        "publisher_domain": order.publisher_domain,
        "dofollow": profile.dofollow if profile else True,
    }


def warm_up() -> None:
    """Load what the handlers load lazily (the language model, numpy) in this process.

    Called in the worker's parent before it forks its pool, so every pool process,
    including each one that replaces a recycled child, starts with them in memory
    instead of paying the load on its first QC.
    """
    from pipeline.similarity import minhash_signature
    from pipeline.stages.qc import detect_language

    detect_language("warm up the language model before the pool forks")
    minhash_signature("warm up numpy before the pool forks")
