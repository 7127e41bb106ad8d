"""Repository functions for the catalog and for preflight's look at recent orders.

Customers and publishers are upserted from a validated :class:`Catalog`, one
statement per table, and read back as the typed profiles preflight decides on.
The caller owns the transaction: every function takes ``session`` and never commits.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from ledger.models import Customer, Item, OrderTarget, Publisher, StoredDocument
from pipeline.catalog import Catalog, CustomerProfile, CustomerTier, PublisherProfile
from pipeline.errors import DataError
from pipeline.history import PastOrder

#: Items in these states never happened as far as duplicates and anchor shares go.
_NOT_PLACED = ("FAILED", "CANCELLED")


def _upsert_customers(session: Session, customers: Collection[CustomerProfile]) -> int:
    if not customers:
        return 0
    statement = pg_insert(Customer).values(
        [
            {
                "customer_id": c.customer_id,
                "name": c.name,
                "tier": str(c.tier),
                "suspended": c.suspended,
            }
            for c in customers
        ]
    )
    statement = statement.on_conflict_do_update(
        index_elements=[Customer.customer_id],
        set_={
            "name": statement.excluded.name,
            "tier": statement.excluded.tier,
            "suspended": statement.excluded.suspended,
            "updated_at": func.now(),
        },
    )
    return len(session.scalars(statement.returning(Customer.customer_id)).all())


def _upsert_publishers(session: Session, publishers: Collection[PublisherProfile]) -> int:
    if not publishers:
        return 0
    statement = pg_insert(Publisher).values(
        [{"domain": p.domain, "profile": p.model_dump(mode="json")} for p in publishers]
    )
    statement = statement.on_conflict_do_update(
        index_elements=[Publisher.domain],
        set_={"profile": statement.excluded.profile, "updated_at": func.now()},
    )
    return len(session.scalars(statement.returning(Publisher.domain)).all())


def upsert_catalog(session: Session, catalog: Catalog) -> tuple[int, int]:
    """Insert the catalog's customers and publishers, or update those already stored.

    Entries not in ``catalog`` are left alone (an import adds and changes, never deletes).

    Returns:
        ``(customers, publishers)``: how many rows were inserted or updated.
    """
    return (
        _upsert_customers(session, catalog.customers),
        _upsert_publishers(session, catalog.publishers),
    )


def _customer(row: Customer) -> CustomerProfile:
    return CustomerProfile(
        customer_id=row.customer_id, name=row.name, tier=row.tier, suspended=row.suspended
    )


def _publisher(row: Publisher) -> PublisherProfile:
    try:
        return PublisherProfile.model_validate(row.profile)
    except ValidationError as error:
        # Stored by an older version, or edited by hand: an operator must look.
        raise DataError(
            f"stored profile of publisher {row.domain} is invalid: {error}",
            code="publisher_profile_invalid",
        ) from None


def customers_by_id(session: Session, ids: Collection[str]) -> dict[str, CustomerProfile]:
    """Return the stored customers among ``ids`` (unknown ids are simply missing)."""
    if not ids:
        return {}
    rows = session.scalars(select(Customer).where(Customer.customer_id.in_(list(ids))))
    return {row.customer_id: _customer(row) for row in rows}


def customer_tiers(session: Session, ids: Collection[str]) -> dict[str, CustomerTier]:
    """Return the tier of each stored customer among ``ids`` (for ranking orders)."""
    if not ids:
        return {}
    query = select(Customer.customer_id, Customer.tier).where(Customer.customer_id.in_(list(ids)))
    return {customer_id: CustomerTier(tier) for customer_id, tier in session.execute(query)}


def publishers_by_domain(session: Session, domains: Collection[str]) -> dict[str, PublisherProfile]:
    """Return the stored publishers among ``domains`` (unknown domains are simply missing).

    Raises:
        DataError: a stored profile no longer validates.
    """
    if not domains:
        return {}
    rows = session.scalars(select(Publisher).where(Publisher.domain.in_(list(domains))))
    return {row.domain: _publisher(row) for row in rows}


def load_catalog(session: Session) -> Catalog:
    """Return the whole stored catalog, customers by id and publishers by domain."""
    customers = session.scalars(select(Customer).order_by(Customer.customer_id))
    publishers = session.scalars(select(Publisher).order_by(Publisher.domain))
    return Catalog(
        customers=tuple(_customer(row) for row in customers),
        publishers=tuple(_publisher(row) for row in publishers),
    )


def recent_orders(
    session: Session,
    customer_ids: Collection[str],
    *,
    since: datetime,
    target_urls: Collection[str] | None = None,
) -> list[PastOrder]:
    """Return the customers' orders created at or after ``since`` that did not fail.

    Failed and cancelled items are left out: an order that never went out is no
    duplicate and adds nothing to an anchor profile. ``target_urls`` narrows the
    result to those targets (all preflight needs: duplicates and anchor profiles
    are per target), so a chunk reads a handful of rows however long the
    customers' history is. One query, ordered by item id: the insert-only
    ``order_targets`` finds the orders (:mod:`ledger.targets`), their items and
    documents say the rest.
    """
    if not customer_ids:
        return []
    document = StoredDocument.document
    query = (
        select(
            Item.id,
            Item.customer_id,
            OrderTarget.target_url,
            Item.publisher_domain,
            document["anchor_text"].astext,
            document["topic"].astext,
            Item.created_at,
            Item.batch_id,
            Item.order_id,
        )
        .select_from(OrderTarget)
        .join(Item, Item.id == OrderTarget.item_id)
        .join(StoredDocument, StoredDocument.item_id == OrderTarget.item_id)
        .where(
            OrderTarget.customer_id.in_(list(customer_ids)),
            OrderTarget.created_at >= since,
            # The item's own time decides; the copy above narrows the index scan.
            Item.created_at >= since,
            Item.state.not_in(_NOT_PLACED),
        )
        .order_by(OrderTarget.item_id)
    )
    if target_urls is not None:
        query = query.where(OrderTarget.target_url.in_(list(target_urls)))
    return [
        PastOrder(
            item_id=int(item_id),
            customer_id=customer_id,
            target_url=target_url or "",
            publisher_domain=publisher_domain,
            anchor_text=anchor_text or "",
            topic=topic or "",
            created_at=created_at,
            batch_id=batch_id,
            order_id=order_id,
        )
        for (
            item_id,
            customer_id,
            target_url,
            publisher_domain,
            anchor_text,
            topic,
            created_at,
            batch_id,
            order_id,
        ) in session.execute(query)
    ]
