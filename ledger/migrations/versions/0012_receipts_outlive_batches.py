"""delivery receipts and events outlive a deleted batch: drop their foreign keys

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30 15:10:00

``DELETE /v1/batches/{id}`` removes a finalized batch's items and outputs. Its
delivery receipts stay (with the idempotency keys, they are the proof that an
order of that lineage was published, so a resubmission never publishes it again),
and so do events that name it; both columns become plain ids.
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_DROPPED = (
    ("fk_delivery_receipts_item_id_items", "delivery_receipts", "items", "item_id"),
    ("fk_delivery_receipts_batch_id_batches", "delivery_receipts", "batches", "batch_id"),
    ("fk_events_batch_id_batches", "events", "batches", "batch_id"),
)


def upgrade() -> None:
    for name, table, _, _ in _DROPPED:
        op.drop_constraint(name, table, type_="foreignkey")


def downgrade() -> None:
    # Fails while receipts or events of deleted batches remain: they have no parent.
    for name, table, referred, column in _DROPPED:
        op.create_foreign_key(name, table, referred, [column], ["id"])
