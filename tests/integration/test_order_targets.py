"""Preflight's history look-up from ``order_targets`` (migration 0013) on a real ledger.

The look-up must answer exactly what the query on ``items`` it replaced answered
(kept below as the reference), for every path that stores orders (submission,
recovery) and after deletion. Each test works in one transaction that it rolls
back, so the session's workers never see its orders.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from ledger.batches import insert_batch
from ledger.catalog import recent_orders
from ledger.db import engine
from ledger.deletion import delete_items_step
from ledger.lineage import Origin, insert_recovery_batch, insert_recovery_items
from ledger.migrate import upgrade
from pipeline.history import PastOrder
from pipeline.manifest import validate_submission
from pipeline.recovery import Pick
from pipeline.states import ItemState
from tests.conftest import _drop_database, _fresh_database

pytestmark = pytest.mark.integration

#: preflight's look-up as migration 0006 served it, straight from ``items`` (whose
#: document is in ``order_documents`` since 0019).
_REFERENCE = text(
    """
    SELECT id, customer_id, document ->> 'target_url', publisher_domain,
           document ->> 'anchor_text', document ->> 'topic', created_at, batch_id, order_id
    FROM items JOIN order_documents ON item_id = id
    WHERE customer_id = ANY(:customers) AND created_at >= :since
      AND state NOT IN ('FAILED', 'CANCELLED')
      AND (CAST(:targets AS text[]) IS NULL
           OR document ->> 'target_url' = ANY(CAST(:targets AS text[])))
    ORDER BY id
    """
)


@contextmanager
def rolled_back() -> Iterator[Session]:
    """A session whose whole transaction is rolled back at the end."""
    session = Session(engine())
    try:
        yield session
    finally:
        session.rollback()
        session.close()


def _reference(
    session: Session, customers: list[str], since: datetime, targets: list[str] | None
) -> list[PastOrder]:
    params = {"customers": customers, "since": since, "targets": targets}
    return [
        PastOrder(
            item_id=int(row[0]),
            customer_id=row[1],
            target_url=row[2] or "",
            publisher_domain=row[3],
            anchor_text=row[4] or "",
            topic=row[5] or "",
            created_at=row[6],
            batch_id=row[7],
            order_id=row[8],
        )
        for row in session.execute(_REFERENCE, params)
    ]


def _order(number: int, customer: str, page: str, publisher: str, anchor: str) -> dict[str, Any]:
    return {
        "order_id": f"o{number}",
        "customer_id": customer,
        "target_url": page,
        "anchor_text": anchor,
        "publisher_domain": publisher,
        "language": "en",
        "topic": "camping",
    }


def _insert(session: Session, batch_id: str, documents: list[dict[str, Any]]) -> list[int]:
    submission = validate_submission(documents, "targets-test", "normal", None, max_items=50)
    return insert_batch(
        session,
        batch_id=batch_id,
        submission=submission,
        manifest_sha256=submission.digest(),
        task_id="t",
    )


def _set_state(session: Session, item_id: int, state: str) -> None:
    session.execute(text("UPDATE items SET state = :s WHERE id = :i"), {"s": state, "i": item_id})


def _history_ledger(session: Session, tag: str) -> tuple[list[str], list[str], list[int]]:
    """Two batches of three customers: repeats, anchors, failures and an old order."""
    a, b, c = f"a-{tag}", f"b-{tag}", f"c-{tag}"
    home, tents = f"https://{tag}.example.com/", f"https://{tag}.example.com/tents"
    p, q = f"p-{tag}.example.com", f"q-{tag}.example.com"
    first = [
        _order(1, a, home, p, "Acme"),  # the same order twice: a duplicate within the window
        _order(2, a, home, p, "Acme"),
        _order(3, a, home, q, "camping gear"),  # same target, other publisher: anchor share
        _order(4, a, home, q, "Acme"),  # failed below
        _order(5, a, home, p, "tents"),  # cancelled below
        _order(6, a, tents, p, "tents"),  # 40 days old below
        _order(7, b, home, p, "Acme"),  # another customer, the same page
        _order(8, c, tents, q, "tents"),
    ]
    second = [
        _order(1, a, home, p, "Acme"),  # the same order again, in a later batch
        _order(2, a, tents, q, "outdoor tents"),
        _order(3, b, tents, p, "tents"),  # delivered below
    ]
    ids = _insert(session, f"targets-{tag}-1", first) + _insert(session, f"targets-{tag}-2", second)
    _set_state(session, ids[3], "FAILED")
    _set_state(session, ids[4], "CANCELLED")
    _set_state(session, ids[10], "DELIVERED")
    session.execute(
        text("UPDATE items SET created_at = now() - interval '40 days' WHERE id = :i"),
        {"i": ids[5]},
    )
    return [a, b, c], [home, tents], ids


def _assert_same(session: Session, customers: list[str], targets: list[str]) -> None:
    """Every combination of customers, targets and windows answers as the reference."""
    now = datetime.now(UTC)
    for since in (now - timedelta(days=30), now - timedelta(days=60), now + timedelta(hours=1)):
        for narrowed in ([], customers[:1], customers[1:], customers):
            for among in (None, targets[:1], targets[1:], targets, ["https://nowhere.example/"]):
                found = recent_orders(session, narrowed, since=since, target_urls=among)
                expected = _reference(session, narrowed, since, among) if narrowed else []
                assert found == expected, (narrowed, among, since)


def test_the_history_look_up_answers_as_the_items_query_did(service_env) -> None:
    # Given a ledger with repeats, several anchors, failed, cancelled, delivered and old orders
    with rolled_back() as session:
        customers, targets, ids = _history_ledger(session, uuid.uuid4().hex[:8])

        # When preflight asks, then it gets exactly what the query on items gave ...
        _assert_same(session, customers, targets)
        # ... which, for the first customer's home page in 30 days, is the five placed orders
        since = datetime.now(UTC) - timedelta(days=30)
        found = recent_orders(session, customers[:1], since=since, target_urls=targets[:1])
        assert [past.item_id for past in found] == [ids[0], ids[1], ids[2], ids[8]]
        assert (found[1].batch_id, found[1].order_id, found[1].anchor_text) == (
            f"targets-{customers[0][2:]}-1",
            "o2",
            "Acme",
        )


def test_a_recovered_order_joins_the_history_and_a_deleted_batch_leaves_it(service_env) -> None:
    # Given a finished batch whose two orders failed, and a recovery of both
    tag = uuid.uuid4().hex[:8]
    customer, page = f"r-{tag}", f"https://{tag}.example.com/"
    documents = [_order(n, customer, page, f"p-{tag}.example.com", "Acme") for n in (1, 2)]
    with rolled_back() as session:
        origin_id = f"targets-{tag}"
        ids = _insert(session, origin_id, documents)
        for item_id in ids:
            _set_state(session, item_id, "FAILED")
        session.execute(
            text("UPDATE batches SET status = 'FAILED', finalized_at = now() WHERE id = :b"),
            {"b": origin_id},
        )
        origin = Origin(origin_id, "FAILED", True, "normal", "targets-test", {}, origin_id)
        picks = [Pick(item_id, f"o{n + 1}", ItemState.PENDING) for n, item_id in enumerate(ids)]
        recovery_id = f"{origin_id}-r1"
        insert_recovery_batch(
            session,
            origin=origin,
            recovery_batch_id=recovery_id,
            recovery_round=1,
            lane="normal",
            max_retries=3,
            picks=picks,
        )
        assert (
            insert_recovery_items(
                session, recovery_batch_id=recovery_id, lane="normal", picks=picks
            )
            == 2
        )
        since = datetime.now(UTC) - timedelta(days=30)

        # When preflight asks, then the recovery's orders are the history, as on items
        found = recent_orders(session, [customer], since=since, target_urls=[page])
        assert [past.batch_id for past in found] == [recovery_id, recovery_id]
        _assert_same(session, [customer], [page])

        # When the finished batches are deleted, then their targets go with their orders
        session.execute(
            text("UPDATE batches SET status = 'COMPLETED', finalized_at = now() WHERE id = :b"),
            {"b": recovery_id},
        )
        assert delete_items_step(session, recovery_id, 10)[0] == 2
        assert delete_items_step(session, origin_id, 10)[0] == 2
        left = session.scalar(
            text("SELECT count(*) FROM order_targets WHERE customer_id = :c"), {"c": customer}
        )
        assert left == 0
        assert recent_orders(session, [customer], since=since) == []


def _indexes(database_url: str) -> set[str]:
    with psycopg.connect(database_url) as connection:
        rows = connection.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")
        return {name for (name,) in rows}


def test_migration_0013_backfills_the_targets_and_downgrades_to_the_index(service_env) -> None:
    # Given a ledger at 0012 holding two orders
    url, name = _fresh_database(service_env["DATABASE_URL"])
    try:
        upgrade(url, "0012")
        with psycopg.connect(url) as connection:
            connection.execute(
                "INSERT INTO batches (id, project_uuid, priority, status, options,"
                " manifest_sha256, total_items)"
                " VALUES ('b', 'p', 'normal', 'RUNNING', '{}', 'x', 2)"
            )
            connection.execute(
                "INSERT INTO items (batch_id, position, order_id, customer_id, publisher_domain,"
                " document, state, attempts) VALUES"
                " ('b', 0, 'o1', 'c', 'p', '{\"target_url\": \"https://t/1\"}', 'PENDING', 0),"
                " ('b', 1, 'o2', 'c', 'p', '{\"target_url\": \"https://t/2\"}', 'FAILED', 0)"
            )

        # When it is migrated to 0013, then every order's target is in order_targets
        upgrade(url, "0013")
        with psycopg.connect(url) as connection:
            rows = connection.execute(
                "SELECT t.target_url, t.created_at = i.created_at FROM order_targets t"
                " JOIN items i ON i.id = t.item_id ORDER BY t.item_id"
            ).fetchall()
        assert rows == [("https://t/1", True), ("https://t/2", True)]
        assert "ix_items_customer_target" not in _indexes(url)
        assert "ix_order_targets_lookup" in _indexes(url)

        # When it is downgraded, then the expression index on items is back
        from alembic import command

        from ledger.migrate import alembic_config

        command.downgrade(alembic_config(url), "0012")
        assert "ix_items_customer_target" in _indexes(url)
        assert "ix_order_targets_lookup" not in _indexes(url)
    finally:
        _drop_database(service_env["DATABASE_URL"], name)
