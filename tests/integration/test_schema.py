"""The Alembic migrations build exactly the schema the models describe, and its constraints hold."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from psycopg.types.json import Jsonb
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ledger.batches import insert_batch
from ledger.db import engine
from ledger.lineage import insert_recovery_items
from ledger.migrate import alembic_config, current_revision, upgrade
from ledger.models import Base
from pipeline.manifest import validate_submission
from pipeline.recovery import Pick
from pipeline.settings import get_settings
from pipeline.states import ItemState
from tests.conftest import _drop_database, _fresh_database
from tests.integration.helpers import make_orders

pytestmark = pytest.mark.integration


def test_migrated_schema_matches_the_models(service_env) -> None:
    with engine().connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []


def test_database_is_at_the_head_revision(service_env) -> None:
    from alembic.script import ScriptDirectory

    url = get_settings().require_database_url()
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    assert current_revision(url) == head


def test_an_item_is_recovered_once_and_only_recovery_items_enter_its_unique_index(
    rolled_back: Session,
) -> None:
    # Given a batch of three orders and a recovery batch (uncommitted: no worker sees them)
    ids = _insert(rolled_back, make_orders(3, "recovered-once"))
    recovery = f"schema-{uuid.uuid4().hex[:8]}"
    _insert(rolled_back, make_orders(1, "recovery-batch"), batch_id=recovery)
    pick = Pick(ids[0], "recovered-once-0", ItemState.PENDING)

    # When the first order is picked for recovery twice
    first = insert_recovery_items(rolled_back, recovery_batch_id=recovery, lane="low", picks=[pick])
    again = insert_recovery_items(rolled_back, recovery_batch_id=recovery, lane="low", picks=[pick])

    # Then one recovery item is inserted, a second one for it is refused, and the
    # unique index is partial: the ordinary items' NULLs take no entry in it
    assert (first, again) == (1, 0)
    with pytest.raises(IntegrityError), rolled_back.begin_nested():
        rolled_back.execute(
            text("UPDATE items SET recovers_item_id = :x WHERE id = :y"), {"x": ids[0], "y": ids[1]}
        )
    unique, predicate = rolled_back.execute(
        text(
            "SELECT indisunique, pg_get_expr(indpred, indrelid) FROM pg_index"
            " WHERE indexrelid = 'uq_items_recovers_item_id'::regclass"
        )
    ).one()
    assert unique and predicate == "(recovers_item_id IS NOT NULL)"


def _insert(session: Session, orders: list[dict[str, Any]], batch_id: str = "") -> list[int]:
    submission = validate_submission(orders, "p", "low", {}, max_items=100)
    return insert_batch(
        session,
        batch_id=batch_id or f"schema-{uuid.uuid4().hex[:8]}",
        submission=submission,
        manifest_sha256="x",
        task_id="t",
    )


def test_migrations_0016_and_0017_split_the_pool_index_by_kind_and_downgrade(
    service_env: dict[str, str],
) -> None:
    # Given a fresh ledger migrated to the head
    url, name = _fresh_database(service_env["DATABASE_URL"])
    try:
        upgrade(url)

        # Then the pool index is one per kind, and recovers_item_id's index is partial
        assert {"ix_items_pool_io", "ix_items_pool_cpu"} <= _indexes(url)
        assert "ix_items_pool_batch" not in _indexes(url)
        assert (
            _index_predicate(url, "uq_items_recovers_item_id") == "(recovers_item_id IS NOT NULL)"
        )

        # When it is downgraded to 0015, then 0014's pool index and 0008's constraint are back
        command.downgrade(alembic_config(url), "0015")
        assert "ix_items_pool_batch" in _indexes(url)
        assert not {"ix_items_pool_io", "ix_items_pool_cpu"} & _indexes(url)
        assert _index_predicate(url, "uq_items_recovers_item_id") is None
    finally:
        _drop_database(service_env["DATABASE_URL"], name)


def test_migration_0019_moves_each_order_to_order_documents_and_back(
    service_env: dict[str, str],
) -> None:
    # Given a ledger at 0018 with an order that has a deadline and one that has none
    url, name = _fresh_database(service_env["DATABASE_URL"])
    with_deadline = {"order_id": "o1", "deadline": "2026-12-03T10:00:00+00:00"}
    without = {"order_id": "o2", "metadata": {"note": "raw"}}
    try:
        upgrade(url, "0018")
        with psycopg.connect(url) as connection:
            connection.execute(
                "INSERT INTO batches (id, project_uuid, priority, status, options,"
                " manifest_sha256, total_items)"
                " VALUES ('b', 'p', 'normal', 'RUNNING', '{}', 'x', 2)"
            )
            connection.execute(
                "INSERT INTO items (batch_id, position, order_id, customer_id, publisher_domain,"
                " document, state, attempts) VALUES ('b', 0, 'o1', 'c', 'p', %s, 'PENDING', 0),"
                " ('b', 1, 'o2', 'c', 'p', %s, 'FAILED', 0)",
                [Jsonb(with_deadline), Jsonb(without)],
            )

        # When it is migrated to 0019, then each document is in order_documents, the
        # deadline on its item, and items keeps no copy
        upgrade(url, "0019")
        query = (
            "SELECT i.order_id, i.deadline, d.document FROM items i"
            " JOIN order_documents d ON d.item_id = i.id ORDER BY i.id"
        )
        with psycopg.connect(url) as connection:
            rows = connection.execute(query).fetchall()
            columns = _columns(connection, "items")
        deadline = datetime(2026, 12, 3, 10, tzinfo=UTC)
        assert rows == [("o1", deadline, with_deadline), ("o2", None, without)]
        assert "document" not in columns and "deadline" in columns

        # When it is downgraded, then items hold their documents again
        command.downgrade(alembic_config(url), "0018")
        with psycopg.connect(url) as connection:
            back = connection.execute("SELECT document FROM items ORDER BY id").fetchall()
            assert "deadline" not in _columns(connection, "items")
        assert back == [(with_deadline,), (without,)]
        assert "order_documents" not in _tables(url)
    finally:
        _drop_database(service_env["DATABASE_URL"], name)


def _columns(connection: psycopg.Connection[Any], table: str) -> set[str]:
    rows = connection.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = %s", [table]
    )
    return {str(row[0]) for row in rows}


def _tables(database_url: str) -> set[str]:
    with psycopg.connect(database_url) as connection:
        rows = connection.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {str(row[0]) for row in rows}


def _indexes(database_url: str) -> set[str]:
    with psycopg.connect(database_url) as connection:
        rows = connection.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'items'")
        return {str(row[0]) for row in rows}


def _index_predicate(database_url: str, index: str) -> str | None:
    with psycopg.connect(database_url) as connection:
        row = connection.execute(
            "SELECT pg_get_expr(indpred, indrelid) FROM pg_index WHERE indexrelid = %s::regclass",
            [index],
        ).fetchone()
    assert row is not None, index
    return None if row[0] is None else str(row[0])
