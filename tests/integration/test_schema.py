"""The Alembic migrations build exactly the schema the models describe, and its constraints hold."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ledger.batches import insert_batch
from ledger.db import engine
from ledger.lineage import insert_recovery_items
from ledger.migrate import current_revision
from ledger.models import Base
from pipeline.manifest import validate_submission
from pipeline.recovery import Pick
from pipeline.settings import get_settings
from pipeline.states import ItemState
from tests.integration.helpers import make_orders

pytestmark = pytest.mark.integration


def test_migrated_schema_matches_the_models(service_env) -> None:
    with engine().connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []


def test_database_is_at_the_head_revision(service_env) -> None:
    from alembic.script import ScriptDirectory

    from ledger.migrate import alembic_config

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
