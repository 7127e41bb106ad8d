"""Orders' JSON lives in the insert-only ``order_documents`` (migration 0019), not in ``items``.

Stored with the items at submission, returned by a claim, copied to a recovery item,
deleted with the item; the claim finds each document by primary key however the
planner sizes the table, and recording a chunk reads only the chunk's items.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session

from ledger.batches import insert_batch
from ledger.deletion import delete_items_step
from ledger.items import _CLAIM, _RECORD, Outcome, _record_row, claim_items
from ledger.lineage import insert_recovery_items
from ledger.migrate import upgrade
from pipeline.manifest import validate_submission
from pipeline.recovery import Pick
from pipeline.settings import sqlalchemy_url
from pipeline.states import ItemState
from tests.conftest import _drop_database, _fresh_database
from tests.integration.helpers import make_orders

pytestmark = pytest.mark.integration


def _insert(session: Session, orders: list[dict[str, Any]], batch_id: str) -> list[int]:
    submission = validate_submission(orders, "documents-test", "normal", {}, max_items=100)
    return insert_batch(
        session, batch_id=batch_id, submission=submission, manifest_sha256="x", task_id="t"
    )


def _documents(session: Session, item_ids: list[int]) -> dict[int, dict[str, Any]]:
    rows = session.execute(
        text("SELECT item_id, document FROM order_documents WHERE item_id = ANY(:ids)"),
        {"ids": item_ids},
    )
    return {int(item_id): dict(document) for item_id, document in rows}


def _claim(session: Session, batch_id: str, item_ids: list[int]) -> dict[int, dict[str, Any]]:
    claimed = claim_items(
        session,
        batch_id=batch_id,
        item_ids=item_ids,
        entry_states=["PENDING"],
        stage_state="PREFLIGHT",
        owner="t@test",
        lease_seconds=60,
    )
    return {item.item_id: item.document for item in claimed}


def test_each_order_is_stored_once_and_a_claim_returns_it(rolled_back: Session) -> None:
    # Given a submitted batch of three orders, only the second with a deadline
    batch_id = f"docs-{uuid.uuid4().hex[:8]}"
    orders = make_orders(3, batch_id)
    for order in orders:
        order.pop("deadline", None)
    orders[1]["deadline"] = "2026-12-03T10:00:00+00:00"
    ids = _insert(rolled_back, orders, batch_id)

    # Then each order's JSON is stored once, under its item, and the deadline on the item
    submission = validate_submission(orders, "documents-test", "normal", {}, max_items=100)
    expected = {i: order.to_json() for i, order in zip(ids, submission.documents, strict=True)}
    assert _documents(rolled_back, ids) == expected
    deadlines = rolled_back.execute(
        text("SELECT deadline FROM items WHERE id = ANY(:ids) ORDER BY id"), {"ids": ids}
    )
    due = datetime(2026, 12, 3, 10, tzinfo=UTC)
    assert [d for (d,) in deadlines] == [None, due, None]

    # When a stage claims them, then it gets each order's document
    assert _claim(rolled_back, batch_id, ids) == expected


def test_a_recovery_item_gets_its_failed_items_document_and_deletion_takes_them(
    rolled_back: Session,
) -> None:
    # Given a failed order and a recovery batch
    origin = f"docs-{uuid.uuid4().hex[:8]}"
    ids = _insert(rolled_back, make_orders(2, origin), origin)
    rolled_back.execute(text("UPDATE items SET state = 'FAILED' WHERE id = :i"), {"i": ids[0]})
    recovery = f"docs-{uuid.uuid4().hex[:8]}"
    recovery_ids = _insert(rolled_back, make_orders(1, recovery), recovery)

    # When the failed order is recovered
    inserted = insert_recovery_items(
        rolled_back,
        recovery_batch_id=recovery,
        lane="normal",
        picks=[Pick(ids[0], "o", ItemState.PENDING)],
    )

    # Then the recovery item holds the failed item's document, and a claim returns it
    new_id = rolled_back.execute(
        text("SELECT id FROM items WHERE recovers_item_id = :i"), {"i": ids[0]}
    ).scalar_one()
    original = _documents(rolled_back, [ids[0]])[ids[0]]
    assert inserted == 1 and _documents(rolled_back, [new_id]) == {new_id: original}
    assert _claim(rolled_back, recovery, [new_id]) == {new_id: original}

    # When the recovery batch's orders are deleted, then their documents go, no others
    rolled_back.execute(
        text("UPDATE batches SET finalized_at = now() WHERE id = :b"), {"b": recovery}
    )
    assert delete_items_step(rolled_back, recovery, 10)[0] == 2
    assert _documents(rolled_back, [*recovery_ids, new_id]) == {}
    assert set(_documents(rolled_back, ids)) == set(ids)


@pytest.fixture(scope="module")
def small_ledger(service_env: dict[str, str]) -> Iterator[Engine]:
    """A fresh, analysed ledger of 11,000 orders: half waiting, half held by ``me``.

    Small and (without the documents) narrow, so a plan that reads the whole of
    ``items`` or ``order_documents`` looks cheap to the planner.
    """
    url, name = _fresh_database(service_env["DATABASE_URL"])
    scratch = create_engine(sqlalchemy_url(url))
    try:
        upgrade(url)
        with scratch.begin() as connection:
            for statement in _SMALL_LEDGER:
                connection.execute(text(statement))
        with scratch.connect() as connection:
            connection.execute(text("ANALYZE"))
            connection.commit()
        yield scratch
    finally:
        scratch.dispose()
        _drop_database(service_env["DATABASE_URL"], name)


_SMALL_LEDGER = (
    "INSERT INTO batches (id, project_uuid, priority, status, options, manifest_sha256,"
    " total_items) VALUES ('b', 'p', 'normal', 'RUNNING', '{}', 'x', 11000)",
    "INSERT INTO items (batch_id, position, order_id, customer_id, publisher_domain, state,"
    " attempts, lease_owner) SELECT 'b', n, 'o' || n, 'c', 'p',"
    " CASE WHEN n % 2 = 0 THEN 'PENDING' ELSE 'PREFLIGHT' END, 0,"
    " CASE WHEN n % 2 = 1 THEN 'me' END FROM generate_series(0, 10999) AS n",
    "INSERT INTO order_documents (item_id, document) SELECT id,"
    " jsonb_build_object('order_id', order_id, 'pad', repeat('x', 400)) FROM items",
)


def _plan(engine: Engine, statement: str, params: dict[str, Any]) -> str:
    with engine.connect() as connection:
        rows = connection.execute(text(f"EXPLAIN {statement}"), params)
        return "\n".join(str(row[0]) for row in rows)


def _chunk(engine: Engine, state: str) -> list[int]:
    query = text("SELECT id FROM items WHERE state = :s ORDER BY id LIMIT 200")
    with engine.connect() as connection:
        return [int(i) for i in connection.scalars(query, {"s": state})]


def test_a_claim_probes_documents_by_primary_key_on_a_ledger_the_planner_thinks_small(
    small_ledger: Engine,
) -> None:
    # When a chunk of 200 waiting orders is claimed on the small ledger
    params = {
        "stage_state": "PREFLIGHT",
        "owner": "t@x",
        "lease": 60,
        "batch_id": "b",
        "ids": _chunk(small_ledger, "PENDING"),
        "entry_states": ["PENDING"],
        "task_id": "t",
        "reclaim": False,
    }
    plan = _plan(small_ledger, _CLAIM.text, params)

    # Then each document is one probe of the primary key, never a scan of the table
    assert "Index Scan using pk_order_documents on order_documents" in plan, plan
    assert "Seq Scan on order_documents" not in plan, plan


def test_recording_a_chunk_reads_only_its_own_items_on_a_ledger_the_planner_thinks_small(
    small_ledger: Engine,
) -> None:
    # When the outcomes of a chunk of 200 held orders are recorded on the small ledger
    ids = _chunk(small_ledger, "PREFLIGHT")
    outcomes = [Outcome(i, "WRITING", True, {"ok": True}, 1) for i in ids]
    params = {
        "rows": json.dumps([_record_row(o) for o in outcomes]),
        "ids": ids,
        "stage_state": "PREFLIGHT",
        "owner": "me",
        "stage": "preflight",
        "started_at": None,
        "finished_at": None,
    }
    plan = _plan(small_ledger, _RECORD.text, params)

    # Then the update finds them through the primary key instead of reading all items
    assert "Index Scan using pk_items on items" in plan, plan
    assert "Seq Scan on items" not in plan, plan
