"""Load what each stage's handlers need besides the order, once per chunk.

Preflight needs the catalog and the customers' recent orders; writing needs the
QC feedback of a rewrite; QC needs the publisher's rules and its earlier
articles' signatures; delivery needs the publisher's endpoint. Each preparer
makes one query (or cache read) per chunk, never one per item.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from cache_warming.customers import customer_profiles
from cache_warming.publishers import publisher_profiles
from ledger.catalog import recent_orders
from ledger.db import transaction
from ledger.idempotency import receipts_by_key, remembered_many
from ledger.items import ClaimedItem, article_signatures, latest_outputs, output_counts
from ledger.lineage import lineage_root
from pipeline.history import PreflightContext, PreflightRules
from pipeline.settings import get_settings
from pipeline.stages.delivery import idempotency_key

#: How many of a publisher's recent articles QC compares a new one with.
SIGNATURES_PER_PUBLISHER: Final = 200

Preparer = Callable[[str, Sequence[ClaimedItem]], dict[int, Any]]


def _value(item: ClaimedItem, name: str) -> str:
    # A damaged stored order must not sink the chunk here: its own run reports it
    # as DataCorruption (tasks.chunk_runner), so a missing field reads as "".
    return str(item.document.get(name, ""))


def _field(items: Sequence[ClaimedItem], name: str) -> set[str]:
    return {_value(item, name) for item in items} - {""}


def prepare_preflight(batch_id: str, items: Sequence[ClaimedItem]) -> dict[int, Any]:
    """Per item: its customer, its publisher and the customer's recent orders."""
    settings = get_settings()
    rules = PreflightRules(
        anchor_window_days=settings.batch_anchor_window_days,
        exact_anchor_max_share=settings.batch_exact_anchor_max_share,
        duplicate_window_days=settings.batch_duplicate_window_days,
    )
    now = datetime.now(UTC)
    days = max(rules.anchor_window_days, rules.duplicate_window_days)
    customer_ids = _field(items, "customer_id")
    customers = customer_profiles(customer_ids)  # cached; a catalog import invalidates it
    # The history is read from the ledger every time, never cached: it must include an
    # order placed a moment ago (cache_warming.warming says why and what warms it).
    with transaction() as session:
        history = recent_orders(
            session,
            sorted(customer_ids),
            since=now - timedelta(days=days),
            target_urls=sorted(_field(items, "target_url")),
        )
    publishers = publisher_profiles(_field(items, "publisher_domain"))
    contexts: dict[int, Any] = {}
    for item in items:
        customer_id = _value(item, "customer_id")
        contexts[item.item_id] = PreflightContext(
            item_id=item.item_id,
            customer=customers.get(customer_id),
            publisher=publishers.get(_value(item, "publisher_domain")),
            history=tuple(past for past in history if past.customer_id == customer_id),
            now=now,
            rules=rules,
        )
    return contexts


def prepare_writing(batch_id: str, items: Sequence[ClaimedItem]) -> dict[int, Any]:
    """Per item: the feedback of its last QC rejection and which attempt this is."""
    ids = [item.item_id for item in items]
    with transaction() as session:
        rejected = latest_outputs(session, ids, "qc", ok=False)
        written = output_counts(session, ids, "writing", ok=True)
    return {
        item_id: {
            "feedback": list((rejected.get(item_id) or {}).get("feedback", [])),
            "attempt": written.get(item_id, 0) + 1,
        }
        for item_id in ids
    }


def prepare_qc(batch_id: str, items: Sequence[ClaimedItem]) -> dict[int, Any]:
    """Per item: the publisher's rules, its earlier articles' signatures, rewrites so far."""
    ids = [item.item_id for item in items]
    domains = sorted(_field(items, "publisher_domain"))
    with transaction() as session:
        rewrites = output_counts(session, ids, "qc", ok=False)
        signatures = article_signatures(
            session, domains, exclude=ids, per_domain=SIGNATURES_PER_PUBLISHER
        )
    publishers = publisher_profiles(domains)
    prepared: dict[int, Any] = {}
    for item in items:
        domain = _value(item, "publisher_domain")
        prepared[item.item_id] = {
            "publisher": publishers.get(domain),
            "signatures": signatures.get(domain, []),
            "rewrites": rewrites.get(item.item_id, 0),
        }
    return prepared


def prepare_delivery(batch_id: str, items: Sequence[ClaimedItem]) -> dict[int, Any]:
    """Per item: its publisher's profile and the receipt of an earlier publish, if any.

    The receipts come from the ledger's idempotency keys in one query for the chunk
    (one more for keys not found there: kept receipts, whose keys may have expired;
    and one for the lineage's root batch, part of the key),
    so a redelivered chunk skips its already published orders without a round trip each.
    """
    with transaction() as session:
        # The key names the order's lineage (the batch it was first submitted in),
        # so a recovery of it finds, and the publisher recognises, an earlier publish.
        lineage = lineage_root(session, batch_id)
        keys = {item.item_id: idempotency_key(lineage, _value(item, "order_id")) for item in items}
        receipts = remembered_many(session, keys.values())
        # A key past BATCH_IDEMPOTENCY_TTL_HOURS (say, of a deleted batch submitted
        # again long after) is still found by its receipt, which is never pruned.
        expired = [key for key in keys.values() if key not in receipts]
        receipts.update(receipts_by_key(session, expired))
    publishers = publisher_profiles(_field(items, "publisher_domain"))
    return {
        item.item_id: {
            "publisher": publishers.get(_value(item, "publisher_domain")),
            "receipt": receipts.get(keys[item.item_id]),
            "lineage_batch_id": lineage,
        }
        for item in items
    }
