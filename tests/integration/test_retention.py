"""Retention against the real ledger: expired checkpoints of finished orders become tombstones.

Rows are written straight into the ledger with old timestamps (no worker is
needed to age them): a finished batch with checkpoints of every kind, old and
new, and an open batch whose old checkpoints must survive.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select

from ledger.db import transaction
from ledger.models import Batch, Event, Item, StageOutput, StoredDocument
from ledger.reports import order_journey
from pipeline.retention import is_pruned

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)
OLD = NOW - timedelta(days=400)


def _batch(finalized: bool, state: str, outputs_at: datetime, orders: int = 3) -> str:
    batch_id = f"keep-{uuid.uuid4().hex[:8]}"
    with transaction() as session:
        session.execute(
            insert(Batch).values(
                id=batch_id,
                project_uuid="tests",
                priority="normal",
                # An unfinished batch is PAUSED, not RUNNING: its orders (open, with
                # no valid stored order) must never reach a worker of a later test,
                # where they would halt the system as corrupted data.
                status="COMPLETED" if finalized else "PAUSED",
                options={},
                manifest_sha256="0" * 64,
                total_items=orders,
                finalized_at=NOW if finalized else None,
            )
        )
        for n in range(orders):
            document: dict[str, Any] = {"order_id": f"o{n}", "metadata": {"note": "raw"}}
            item_id = session.scalar(
                insert(Item)
                .values(
                    batch_id=batch_id,
                    position=n,
                    order_id=f"o{n}",
                    customer_id="c",
                    publisher_domain="p.example",
                    state=state,
                    created_at=outputs_at,
                )
                .returning(Item.id)
            )
            session.add(StoredDocument(item_id=item_id, document=document))
            for stage, ok in (("preflight", True), ("writing", True), ("qc", True), ("qc", False)):
                session.execute(
                    insert(StageOutput).values(
                        item_id=item_id,
                        stage=stage,
                        attempt=1 if ok else 2,
                        ok=ok,
                        output={"body": stage},
                        created_at=outputs_at,
                    )
                )
    return batch_id


def _outputs(batch_id: str) -> list[tuple[str, bool, dict[str, Any]]]:
    with transaction() as session:
        rows = session.execute(
            select(StageOutput.stage, StageOutput.ok, StageOutput.output)
            .join(Item, Item.id == StageOutput.item_id)
            .where(Item.batch_id == batch_id)
        )
        return [(stage, ok, dict(output)) for stage, ok, output in rows]


def _metadata(batch_id: str) -> list[Any]:
    with transaction() as session:
        return list(
            session.scalars(
                select(StoredDocument.document["metadata"])
                .join(Item, Item.id == StoredDocument.item_id)
                .where(Item.batch_id == batch_id)
            )
        )


def test_prune_replaces_expired_checkpoints_of_finished_orders_only(
    service_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.settings import get_settings
    from tasks.retention import prune

    # Given a finished batch with old checkpoints, one with new ones, and an open old one
    old_done = _batch(True, "DELIVERED", OLD, orders=5)
    new_done = _batch(True, "DELIVERED", NOW - timedelta(days=1))
    old_open = _batch(False, "QC", OLD)
    monkeypatch.setenv("BATCH_PRUNE_BATCH_SIZE", "2")  # bounded batches: several per kind
    get_settings.cache_clear()
    try:
        # When the prune runs twice
        started = datetime.now(UTC)
        first = prune()
        second = prune()
        ended = datetime.now(UTC)
    finally:
        monkeypatch.delenv("BATCH_PRUNE_BATCH_SIZE")
        get_settings.cache_clear()

    # Then the old finished orders lost their received metadata, prompts and drafts
    assert first["pruned"]["received"] >= 5 and first["pruned"]["writing"] >= 5
    kept = {(s, ok) for s, ok, out in _outputs(old_done) if not is_pruned(out)}
    assert kept == {("qc", True), ("qc", False)}  # QC reports are kept for ever
    tomb = next(out for s, _, out in _outputs(old_done) if s == "writing")
    # Its date is the prune's own (NOW is the module's import time: a run may cross midnight).
    days = {started.date().isoformat(), ended.date().isoformat()}
    assert tomb["kind"] == "writing" and tomb["pruned_at"][:10] in days
    assert all(is_pruned(m) for m in _metadata(old_done))
    # and nothing of the new or the open batch changed
    for untouched in (new_done, old_open):
        assert not any(is_pruned(out) for _, _, out in _outputs(untouched))
        assert _metadata(untouched) == [{"note": "raw"}] * 3
    # and the second run found nothing more (idempotent), and both runs are events
    assert second["pruned"] == {k: 0 for k in second["pruned"]}
    with transaction() as session:
        kinds = list(session.scalars(select(Event.kind).where(Event.kind == "pruned")))
        journey = order_journey(session, "o0", old_done)
    assert len(kinds) >= 2
    assert journey  # the pruned order's journey still loads


def test_journey_says_what_was_pruned() -> None:
    from cli.render import _summary

    tomb = {"pruned": True, "kind": "writing", "pruned_at": "2026-05-01T03:15:00+00:00"}
    assert _summary(True, tomb) == "pruned on 2026-05-01 (writing retention)"
